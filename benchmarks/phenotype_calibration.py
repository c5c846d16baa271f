"""Fit the served phenotype ranking's calibration: ``phenotype.low_confidence_below``, the top score under
which a differential is flagged, and ``phenotype.confidence_temperature``, that of the confidences shown.

A differential "fits" when the case's diagnosis is among its first ``--fits-within``
diseases (10). On the dev part of a disease-disjoint split of the phenopacket sample
(:func:`medllm.data.phenopackets.split_by_disease`, seed 0) the threshold on the
configured ranker's best score that maximises Youden's J (sensitivity + specificity - 1)
for "does not fit" is chosen; the validation part is then scored once with it. Cases
whose disease the knowledge base lacks count as "does not fit": for them nothing in the
base can fit, which is what the flag is for.

The confidence shown is ``softmax(scores / T)`` over every disease of the base. ``T`` is
fitted on dev by least log-loss of "the first disease is the diagnosis" with the first
disease's confidence, over every case (one whose disease the base lacks is a wrong top-1:
the confidence must be low there too); the expected calibration error of that
confidence (15 equal bins) and its mean are reported per part at ``T = 1`` and at the
fitted ``T``.

    nice -n 19 .venv/bin/python benchmarks/phenotype_calibration.py

Prints, per part: n, the share flagged, top-1 of the flagged and unflagged cases, the
sensitivity and specificity for "does not fit", the ROC AUC of the top score, and the ECE
and mean of the top-1 confidence; writes ``runs/bench/phenotype_calibration.json``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

from medllm.config import PhenotypeConfig
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.eval.stats import expected_calibration_error
from medllm.io import atomic_write_json
from medllm.markdown import table
from medllm.phenotype.explain import confidences
from medllm.phenotype.fusion import TEMPERATURE_BOUNDS
from medllm.phenotype.kb import load_knowledge_base
from medllm.phenotype.rank import case_scores, case_terms, id_positions, load_ranker, rank_of

SAMPLE = Path("/work/shared/phenopackets/phenopacket-store-dev.zip")


def scores_and_ranks(ranker, cases, use_excluded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each case's scores of every disease (its age and sex in the prior; cases × diseases, float32) and the
    rank of its diagnosis (inf when not ranked)."""
    position = id_positions(ranker)
    scores, ranks = [], []
    for case in cases:
        terms = case_terms(ranker.kb, case.observed, case.excluded if use_excluded else ())
        scores.append(case_scores(ranker, terms, case.age_years, case.sex).astype(np.float32))
        targets = [position[d] for d in case.disease_ids if d in position]
        ranks.append(min((rank_of(scores[-1], t) for t in targets), default=np.inf))
    return np.vstack(scores), np.array(ranks, dtype=float)


def top_confidence(scores: np.ndarray, temperature: float) -> np.ndarray:
    """The first disease's confidence as the API shows it (:func:`~medllm.phenotype.explain.confidences`), per
    case (row)."""
    return confidences(scores, temperature).max(1)


def fit_temperature(scores: np.ndarray, top1: np.ndarray) -> float:
    """The temperature of least log-loss of "the top-1 is right" with the top-1 confidence (searched on its log)."""
    result = minimize_scalar(
        lambda log_t: log_loss(top1, np.clip(top_confidence(scores, math.exp(log_t)), 1e-12, 1 - 1e-12)),
        bounds=TEMPERATURE_BOUNDS,
        method="bounded",
    )
    return float(math.exp(result.x))


def fit_threshold(tops: np.ndarray, misfit: np.ndarray) -> float:
    """The score threshold (flag when below) with the largest Youden's J on these cases."""
    fpr, tpr, thresholds = roc_curve(misfit, -tops)  # a lower top score predicts a misfit
    best = int(np.argmax(tpr - fpr))
    return float(-thresholds[best])


def describe(tops: np.ndarray, ranks: np.ndarray, misfit: np.ndarray, threshold: float) -> dict:
    flagged = tops < threshold
    top1 = ranks <= 1
    return {
        "n": len(tops),
        "flagged": float(flagged.mean()),
        "top1_flagged": float(top1[flagged].mean()) if flagged.any() else None,
        "top1_unflagged": float(top1[~flagged].mean()) if (~flagged).any() else None,
        "sensitivity": float(flagged[misfit].mean()) if misfit.any() else None,
        "specificity": float((~flagged)[~misfit].mean()) if (~misfit).any() else None,
        "auc": float(roc_auc_score(misfit, -tops)) if 0 < misfit.sum() < len(misfit) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--fits-within", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/phenotype_calibration.json"))
    args = parser.parse_args()

    cfg = PhenotypeConfig()
    ranker = load_ranker(cfg, load_knowledge_base())
    parts = split_by_disease(load_phenopackets(args.sample).cases, seed=0)
    measured = {p: scores_and_ranks(ranker, parts[p], cfg.use_excluded) for p in ("dev", "validation")}
    dev_scores, dev_ranks = measured["dev"]
    threshold = fit_threshold(dev_scores.max(1), dev_ranks > args.fits_within)
    temperature = fit_temperature(dev_scores, dev_ranks <= 1)
    report = {"threshold": threshold, "fits_within": args.fits_within, "temperature": temperature, "parts": {}}
    for part, (scores, ranks) in measured.items():
        shown = {t: top_confidence(scores, t) for t in (1.0, temperature)}
        report["parts"][part] = describe(scores.max(1), ranks, ranks > args.fits_within, threshold)
        report["parts"][part] |= {f"ece_t{t:.3g}": expected_calibration_error(c, ranks <= 1) for t, c in shown.items()}
        report["parts"][part] |= {f"mean_confidence_t{t:.3g}": float(c.mean()) for t, c in shown.items()}
    rows = [[p, *(f"{v:.3f}" if isinstance(v, float) else v for v in r.values())] for p, r in report["parts"].items()]
    header = ["part", "n", "flagged", "top-1 flagged", "top-1 unflagged", "sensitivity", "specificity", "AUC"]
    header += [f"{kind} at T = {t:.3g}" for kind in ("ECE", "mean confidence") for t in (1.0, temperature)]
    print(f"threshold fitted on dev: {threshold:.4g} (flag when the best score is below it)")
    print(f"temperature fitted on dev: {temperature:.4g}\n")
    print("\n".join(table(header, rows)))
    atomic_write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
