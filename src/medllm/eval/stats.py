"""Statistics shared by the evaluations: bootstrap intervals and calibration.

One copy for every benchmark, so diagnosis, multiple-choice and safety
numbers carry intervals computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import bootstrap

RESAMPLES = 1000
SEED = 0
ECE_BINS = 15


def bootstrap_ci(
    *samples: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED, level: float = 0.95
) -> list[float] | None:
    """Percentile bootstrap interval of the mean of one sample (e.g. 0/1 hits), or of the macro
    average of several (e.g. per-subject hits), each resampled on its own (stratified).

    Seeded, so a report is reproducible; None when a sample has fewer than two
    values, where resampling says nothing.
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if not arrays or min(a.size for a in arrays) < 2:
        return None

    def macro(*xs, axis=-1):
        return np.mean([x.mean(axis=axis) for x in xs], axis=0)

    result = bootstrap(
        arrays,
        macro,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def paired_bootstrap_ci(
    first: Sequence[float], second: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED, level: float = 0.95
) -> list[float] | None:
    """Percentile bootstrap interval of mean(first) - mean(second), resampling items jointly.

    The two lists score the same items, so each resample keeps the pairs together.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
    if a.size < 2:
        return None
    result = bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        paired=True,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> list[dict]:
    """Equal-width confidence bins on [0, 1]: count, mean confidence and accuracy of each non-empty bin."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence and correctness differ in size: {conf.size} vs {hit.size}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins, (lo, hi], with 0 in the first bin (the usual ECE convention)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    hit_sum = np.bincount(which, weights=hit, minlength=bins)
    return [
        {
            "low": float(edges[i]),
            "high": float(edges[i + 1]),
            "n": int(counts[i]),
            "confidence": float(conf_sum[i] / counts[i]),
            "accuracy": float(hit_sum[i] / counts[i]),
        }
        for i in range(bins)
        if counts[i]
    ]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width bins."""
    table = reliability_bins(confidence, correct, bins)
    total = sum(b["n"] for b in table)
    if not total:
        raise ValueError("expected calibration error of no predictions")
    return sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in table) / total


def calibration(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> dict:
    """ECE, mean confidence and the reliability-diagram bins of predictions with a confidence each."""
    if len(confidence) == 0:
        raise ValueError("calibration of zero predictions")
    return {
        "n": len(confidence),
        "n_bins": bins,
        "mean_confidence": float(np.mean(confidence)),
        "ece": expected_calibration_error(confidence, correct, bins),
        "bins": reliability_bins(confidence, correct, bins),
    }


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN for no trials)."""
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(first: list[bool], second: list[bool]) -> dict:
    """Exact (binomial) McNemar test on paired outcomes of the same cases, two-sided."""
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    n = only_first + only_second
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2**n if n else 1.0
    return {"only_first": only_first, "only_second": only_second, "p_value": min(1.0, 2 * tail)}


def paired_comparison(first: Sequence[bool], second: Sequence[bool]) -> dict:
    """First minus second on the same items: exact McNemar test, accuracy difference and its paired bootstrap CI."""
    return {
        **mcnemar_exact(first, second),
        "n": len(first),
        "difference": float(np.mean(first) - np.mean(second)),
        "bootstrap_ci95": paired_bootstrap_ci(first, second),
    }
