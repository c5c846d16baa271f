"""The HPO shapes of ``/v1/diagnose`` with the model re-ranking the phenotype ranking's top K."""

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import zscore

from conftest import PLAIN_RESNIK
from medllm.phenotype.fusion import Fusion, save_fusions

A1, B1 = "HP:0000003", "HP:0000006"
BODY = {"hpo": [{"id": A1}, {"id": B1}], "top_k": 50}
PHENOTYPE_ORDER = ["OMIM:1", "OMIM:3", "ORPHA:9", "OMIM:2"]  # hand-worked in tests/serve/routes/test_diagnose.py


def favouring(name: str, calls: list):
    """A scorer whose log-likelihood prefers ``name``'s answer, recording each call's answers."""

    def loglikelihoods(messages, answers):
        calls.append((messages, answers))
        return [(-1.0 if a.startswith(name) else -5.0, 2) for a in answers]

    return loglikelihoods


def test_a_set_weight_serves_the_fused_order_with_the_fitted_temperature(make_client):
    client = make_client(phenotype=PLAIN_RESNIK, rerank={"weight": 2.0, "temperature": 0.5})
    calls = []
    client.app.state.serve.engine.loglikelihoods = favouring("Disease two", calls)
    body = client.post("/v1/diagnose", json=BODY).json()
    assert body["ranking"] == "fused" and body["rationale"] is not None  # the model still writes the rationale
    assert len(calls) == 1 and sorted(calls[0][1]) == sorted(f"{d['name']}\n" for d in body["differential"])
    # the candidates are shown with their evidence
    assert "- Disease three: explains B1; not A1\n" in calls[0][0][1]["content"]
    ranked = [d["disease_id"] for d in body["differential"]]
    assert ranked == ["OMIM:2", "OMIM:1", "OMIM:3", "ORPHA:9"]  # 2 * (-1 - -5) outweighs its phenotype z-score
    phenotype = np.array(
        [next(d["score"] for d in body["differential"] if d["disease_id"] == i) for i in PHENOTYPE_ORDER]
    )
    fused = zscore(phenotype) + 2.0 * np.array([-5.0, -5.0, -5.0, -1.0])
    expected = dict(zip(PHENOTYPE_ORDER, softmax(fused / 0.5)))
    assert [d["confidence"] for d in body["differential"]] == pytest.approx([expected[i] for i in ranked], abs=1e-3)


def test_the_fit_of_eval_is_served_and_a_zero_weight_keeps_the_phenotype_order(make_client):
    client = make_client(phenotype=PLAIN_RESNIK)
    state = client.app.state.serve
    assert state.fusion is None
    assert client.post("/v1/diagnose", json=BODY).json()["ranking"] == "phenotype"
    save_fusions(state.config.run.rerank, {"base": Fusion(3.0, 1.5)}, adapter=None)
    fitted = make_client(phenotype=PLAIN_RESNIK)
    fitted.app.state.serve.engine.loglikelihoods = favouring("Disease three", [])
    body = fitted.post("/v1/diagnose", json=BODY).json()
    assert fitted.app.state.serve.fusion == Fusion(3.0, 1.5)
    assert body["ranking"] == "fused" and body["differential"][0]["disease_id"] == "OMIM:3"
    zero = make_client(phenotype=PLAIN_RESNIK, rerank={"weight": 0.0})
    ranked = [d["disease_id"] for d in zero.post("/v1/diagnose", json=BODY).json()["differential"]]
    assert zero.app.state.serve.fusion is None and ranked == PHENOTYPE_ORDER


def test_the_in_process_model_re_ranks_in_one_batch(make_client):
    """The real path: the tiny model scores the K answers; only the top K (here 2) are re-ordered."""
    client = make_client(phenotype=PLAIN_RESNIK, rerank={"weight": 1.0, "top_k": 2})
    body = client.post("/v1/diagnose", json=BODY).json()
    assert body["ranking"] == "fused"
    ranked = [d["disease_id"] for d in body["differential"]]
    assert sorted(ranked[:2]) == sorted(PHENOTYPE_ORDER[:2]) and ranked[2:] == PHENOTYPE_ORDER[2:]
    assert sum(d["confidence"] for d in body["differential"][:2]) == pytest.approx(1.0, abs=1e-3)


def test_entries_of_one_subtype_series_are_marked_with_a_note():
    from medllm.serve.phenotype import mark_series
    from medllm.serve.schemas import Diagnosis

    names = [
        "Leber congenital amaurosis 6",
        "Kabuki syndrome",
        "Leber congenital amaurosis 9",
        "Bardet-Biedl syndrome 4",
    ]
    differential = [
        Diagnosis(rank=i + 1, name=n, disease_id=f"OMIM:{i}", icd10=None, confidence=0.1, rationale="")
        for i, n in enumerate(names)
    ]
    marked, notes = mark_series(differential)
    assert [d.series for d in marked] == ["Leber congenital amaurosis", None, "Leber congenital amaurosis", None]
    assert (
        len(notes) == 1
        and notes[0].startswith("Leber congenital amaurosis: 2 numbered subtypes")
        and "1, 3" in notes[0]
    )
    assert differential[0].series is None  # the input is left as it was
