"""Fusing the phenotype ranking's top K with the model's log-likelihoods, and the weight and temperature fitted.

Fused score of a candidate = z(phenotype score over the K) + w · (model log-likelihood of its name, summed or
per token). ``w`` is chosen on a grid that includes 0, by top-1 on disease-disjoint fitting cases (ties: the
smaller ``w``). At ``w = 0`` the fused order is the phenotype order, so on its fitting data the fused top-1 is
never below the phenotype's. The confidence is a softmax over the K of the fused score with a temperature
fitted by negative log-likelihood of the true disease (cases whose diagnosis is among the K).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import zscore

from medllm.config import RerankConfig
from medllm.io import atomic_write_json

WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
TEMPERATURE_BOUNDS = (-5.0, 5.0)  # natural log of the temperature searched


@dataclass(frozen=True)
class ScoredCase:
    """One case's top K, in phenotype order: phenotype scores, the model's log-likelihoods and token counts."""

    phenotype: np.ndarray
    loglik: np.ndarray
    tokens: np.ndarray
    gold: int | None  # position of the diagnosis among the K; None when it is not among them


@dataclass(frozen=True)
class Fusion:
    weight: float
    temperature: float = 1.0
    per_token: bool = False  # the model's log-likelihood divided by its number of tokens

    def scores(self, case: ScoredCase) -> np.ndarray:
        phenotype = np.asarray(case.phenotype, dtype=float)
        # (nearly) equal phenotype scores have no spread to standardise: z is 0 (scipy gives NaN or noise)
        flat = np.ptp(phenotype) <= 1e-9 * (1 + np.abs(phenotype).max())
        z = np.zeros_like(phenotype) if flat else zscore(phenotype)
        model = case.loglik / case.tokens if self.per_token else case.loglik
        return z + self.weight * np.asarray(model, dtype=float)

    def order(self, case: ScoredCase) -> np.ndarray:
        """Positions best first; ties keep the phenotype order (a stable sort)."""
        return np.argsort(-self.scores(case), kind="stable")

    def confidences(self, case: ScoredCase) -> np.ndarray:
        return softmax(self.scores(case) / self.temperature)


def top1_hits(fusion: Fusion, cases: list[ScoredCase]) -> int:
    return sum(c.gold is not None and int(fusion.order(c)[0]) == c.gold for c in cases)


def fit_weight(cases: list[ScoredCase], weights=WEIGHTS) -> Fusion:
    """The (weight, per-token or summed) of the grid with the most top-1 hits; ties: smaller weight, summed."""
    grid = [Fusion(w, per_token=p) for w in sorted(weights) for p in (False, True)]
    best = max(grid, key=lambda f: (top1_hits(f, cases), -f.weight, not f.per_token))
    return Fusion(best.weight, per_token=best.per_token if best.weight > 0 else False)


def nll(fusion: Fusion, cases: list[ScoredCase]) -> float:
    """Mean negative log-likelihood of the diagnosis under the K-way softmax (cases with it among the K)."""
    terms = [-log_softmax(fusion.scores(c) / fusion.temperature)[c.gold] for c in cases if c.gold is not None]
    return float(np.mean(terms)) if terms else math.nan


def fit_temperature(fusion: Fusion, cases: list[ScoredCase]) -> Fusion:
    """``fusion`` with the temperature of least NLL (searched on its log, bounded); unchanged without cases."""
    if not any(c.gold is not None for c in cases):
        return fusion
    result = minimize_scalar(
        lambda log_t: nll(Fusion(fusion.weight, math.exp(log_t), fusion.per_token), cases),
        bounds=TEMPERATURE_BOUNDS,
        method="bounded",
    )
    return Fusion(fusion.weight, float(math.exp(result.x)), fusion.per_token)


def fit(cases: list[ScoredCase]) -> Fusion:
    """The weight (by top-1), then the temperature (by NLL), both on ``cases``."""
    return fit_temperature(fit_weight(cases), cases)


def save_fusions(path: Path, fits: dict[str, Fusion], **about) -> None:
    """``{"fits": {"base": ..., "finetuned": ...}, **about}`` (the adapter, protocol, n), written atomically."""
    atomic_write_json(path, {**about, "fits": {name: asdict(f) for name, f in fits.items()}})


def load_fusion(path: Path, adapter: str | None) -> Fusion | None:
    """The fit for the model served: the fine-tuned one when ``adapter`` is the one fitted, the base one when no
    adapter is served; None when there is no file or no matching fit."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    fitted = saved.get("adapter")
    same = adapter is not None and fitted is not None and Path(adapter).resolve() == Path(fitted).resolve()
    which = "base" if adapter is None else "finetuned" if same else None
    fit = saved["fits"].get(which) if which else None
    return Fusion(**fit) if fit else None


def serving_fusion(cfg: RerankConfig, path: Path, adapter: str | None) -> Fusion | None:
    """The fusion to serve: ``rerank.weight`` and ``rerank.temperature`` where set, else the fit in ``path`` for
    the served model; None when the weight is 0 or nothing was fitted (the phenotype ranking is served)."""
    fitted = load_fusion(path, adapter)
    weight = cfg.weight if cfg.weight is not None else fitted.weight if fitted else 0.0
    if weight <= 0:
        return None
    temperature = cfg.temperature or (fitted.temperature if fitted else 1.0)
    return Fusion(weight, temperature, fitted.per_token if fitted else False)
