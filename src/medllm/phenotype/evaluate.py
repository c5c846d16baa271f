"""Rank the true diagnosis of labelled cases and summarise: top-k, MRR, intervals, coverage, time per case.

Every case counts: a case whose diagnosis is not among the ranked diseases is
a miss (rank infinite, reciprocal rank 0). Ranks count ties pessimistically.
Intervals: Wilson score intervals over cases for top-k, and a bootstrap that
resamples diseases (cases of one disease are not independent) for all metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from medllm.errors import MedllmError
from medllm.eval.stats import wilson_interval
from medllm.phenotype.rank import Ranker, case_terms, rank_of

TOP_K = (1, 3, 10)


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    disease: str
    rank: float  # math.inf when the diagnosis is not ranked
    seconds: float
    unknown_terms: int


def evaluate_cases(ranker: Ranker, cases, use_excluded: bool = True) -> list[CaseResult]:
    """The rank of each case's diagnosis (the best of its disease ids) under ``ranker``."""
    position = {d: i for i, d in enumerate(ranker.kb.disease_ids[ranker.rows].tolist())}
    results = []
    for case in cases:
        start = time.perf_counter()
        terms = case_terms(ranker.kb, case.observed, case.excluded if use_excluded else ())
        scores = ranker.score(terms.observed, terms.excluded)
        if np.isnan(scores).any():
            raise MedllmError(f"{type(ranker).__name__} gave NaN scores for case {case.id}")
        targets = [position[d] for d in case.disease_ids if d in position]
        rank = min((rank_of(scores, t) for t in targets), default=math.inf)
        seconds = time.perf_counter() - start
        disease = case.disease_ids[0] if case.disease_ids else ""
        results.append(CaseResult(case.id, disease, rank, seconds, len(terms.unknown)))
    return results


def _metrics(ranks: np.ndarray) -> dict[str, float]:
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in TOP_K}
    out["mrr"] = float(np.mean(1.0 / ranks))
    return out


def _bootstrap(ranks: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """95% percentile intervals from resampling groups (diseases) with replacement."""
    keys, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(keys))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(keys), len(keys))])
        for name, value in _metrics(ranks[picked]).items():
            draws.setdefault(name, []).append(value)
    return {name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for name, v in draws.items()}


def summarise(results: list[CaseResult], n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics with intervals, coverage, and the median/95th-percentile ranking time in ms."""
    ranks = np.array([r.rank for r in results], dtype=float)
    n = len(ranks)
    if n == 0:
        return {"n": 0}
    groups = np.array([r.disease for r in results])
    out: dict = {"n": n, "diseases": len(set(groups.tolist())), **_metrics(ranks)}
    out["wilson"] = {f"top{k}": wilson_interval(int(np.sum(ranks <= k)), n) for k in TOP_K}
    out["bootstrap"] = _bootstrap(ranks, groups, n_boot, seed) if n_boot else {}
    out["coverage"] = float(np.mean(np.isfinite(ranks)))
    covered = ranks[np.isfinite(ranks)]
    out["covered"] = _metrics(covered) if len(covered) else {}
    ms = np.array([r.seconds for r in results]) * 1000
    out["ms_median"], out["ms_p95"] = float(np.median(ms)), float(np.percentile(ms, 95))
    out["unknown_terms"] = int(sum(r.unknown_terms for r in results))
    return out
