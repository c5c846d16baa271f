import numpy as np
import pytest

from medllm.phenotype.fusion import (
    Fusion,
    ScoredCase,
    fit,
    fit_temperature,
    fit_weight,
    load_fusion,
    nll,
    save_fusions,
    top1_hits,
)


def cases(model: str, n: int = 200, k: int = 10, seed: int = 0) -> list[ScoredCase]:
    """Phenotype scores that put the diagnosis first in about 40% of the cases; the model noise or informative."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        phenotype = np.sort(rng.normal(size=k))[::-1]
        gold = 0 if rng.random() < 0.4 else int(rng.integers(1, k))
        loglik = rng.normal(-10, 2, size=k)
        if model == "informative":
            loglik[gold] += 3.0
        out.append(ScoredCase(phenotype, loglik, rng.integers(3, 15, size=k).astype(float), gold))
    return out


def test_a_noise_model_gets_weight_zero_where_the_phenotype_is_always_right():
    perfect = [ScoredCase(c.phenotype, c.loglik, c.tokens, 0) for c in cases("noise")]
    assert fit_weight(perfect) == Fusion(0.0)


@pytest.mark.parametrize("seed", range(5))
def test_the_fitted_weight_never_loses_to_the_phenotype_ranking_on_its_fitting_data(seed):
    data = cases("noise", n=60, seed=seed)
    assert top1_hits(fit_weight(data), data) >= top1_hits(Fusion(0.0), data)


def test_an_informative_model_gets_a_positive_weight_and_more_top1():
    data = cases("informative")
    fused = fit_weight(data)
    assert fused.weight > 0
    assert top1_hits(fused, data) > top1_hits(Fusion(0.0), data) + 20


def test_weight_zero_keeps_the_phenotype_order_even_with_ties():
    case = ScoredCase(np.array([2.0, 1.0, 1.0, 1.0]), np.array([-1.0, -9.0, 0.0, -2.0]), np.ones(4), 2)
    assert Fusion(0.0).order(case).tolist() == [0, 1, 2, 3]
    assert Fusion(1.0).order(case).tolist() == [0, 2, 3, 1]  # z = [1.73, -0.58, -0.58, -0.58]
    flat = ScoredCase(np.ones(3), np.array([-3.0, -1.0, -2.0]), np.array([1.0, 1.0, 4.0]), 1)
    assert Fusion(1.0).order(flat).tolist() == [1, 2, 0]  # no phenotype spread: the model decides
    assert Fusion(1.0, per_token=True).order(flat).tolist() == [2, 1, 0]  # -2 over 4 tokens is the best per token


def test_the_temperature_fit_lowers_the_nll_and_skips_cases_beyond_the_k():
    data = cases("informative")
    overconfident = Fusion(5.0)
    fitted = fit_temperature(overconfident, [*data, ScoredCase(np.zeros(10), np.zeros(10), np.ones(10), None)])
    assert fitted.weight == overconfident.weight and fitted.temperature > 1
    assert nll(fitted, data) < nll(overconfident, data) - 0.5
    probs = fitted.confidences(data[0])
    assert probs.sum() == pytest.approx(1.0) and probs.argmax() == fitted.order(data[0])[0]


def test_fits_round_trip_and_serve_only_the_model_they_were_fitted_for(tmp_path):
    path = tmp_path / "rerank.json"
    assert load_fusion(path, None) is None
    fits = {"base": fit(cases("noise", n=50)), "finetuned": Fusion(0.5, 2.0, True)}
    save_fusions(path, fits, adapter=str(tmp_path / "adapter"), dev_n=50)
    assert load_fusion(path, None) == fits["base"]
    assert load_fusion(path, str(tmp_path / "run" / ".." / "adapter")) == fits["finetuned"]
    assert load_fusion(path, str(tmp_path / "another")) is None
