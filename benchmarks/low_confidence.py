"""Fit ``phenotype.low_confidence_below``: the top phenotype score under which a differential is flagged.

A differential "fits" when the case's diagnosis is among its first ``--fits-within``
diseases (10). On the dev part of a disease-disjoint split of the phenopacket sample
(:func:`medllm.data.phenopackets.split_by_disease`, seed 0) the threshold on the
configured ranker's best score that maximises Youden's J (sensitivity + specificity - 1)
for "does not fit" is chosen; the validation part is then scored once with it. Cases
whose disease the knowledge base lacks count as "does not fit": for them nothing in the
base can fit, which is what the flag is for.

    nice -n 19 .venv/bin/python benchmarks/low_confidence.py

Prints, per part: n, the share flagged, top-1 of the flagged and unflagged cases, the
sensitivity and specificity for "does not fit", and the ROC AUC of the top score; writes
``runs/bench/low_confidence.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from medllm.config import PhenotypeConfig
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.io import atomic_write_json
from medllm.markdown import table
from medllm.phenotype.kb import load_knowledge_base
from medllm.phenotype.rank import case_scores, case_terms, id_positions, load_ranker, rank_of

SAMPLE = Path("/work/shared/phenopackets/phenopacket-store-dev.zip")


def top_scores_and_ranks(ranker, cases, use_excluded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each case's best disease score (its age and sex in the prior) and the rank of its diagnosis (inf when not
    ranked)."""
    position = id_positions(ranker)
    tops, ranks = [], []
    for case in cases:
        terms = case_terms(ranker.kb, case.observed, case.excluded if use_excluded else ())
        scores = case_scores(ranker, terms, case.age_years, case.sex)
        targets = [position[d] for d in case.disease_ids if d in position]
        tops.append(float(scores.max()))
        ranks.append(min((rank_of(scores, t) for t in targets), default=np.inf))
    return np.array(tops), np.array(ranks, dtype=float)


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
    parser.add_argument("--out", type=Path, default=Path("runs/bench/low_confidence.json"))
    args = parser.parse_args()

    cfg = PhenotypeConfig()
    ranker = load_ranker(cfg, load_knowledge_base())
    parts = split_by_disease(load_phenopackets(args.sample).cases, seed=0)
    measured = {p: top_scores_and_ranks(ranker, parts[p], cfg.use_excluded) for p in ("dev", "validation")}
    dev_tops, dev_ranks = measured["dev"]
    threshold = fit_threshold(dev_tops, dev_ranks > args.fits_within)
    report = {"threshold": threshold, "fits_within": args.fits_within, "parts": {}}
    for part, (tops, ranks) in measured.items():
        report["parts"][part] = describe(tops, ranks, ranks > args.fits_within, threshold)
    rows = [[p, *(f"{v:.3f}" if isinstance(v, float) else v for v in r.values())] for p, r in report["parts"].items()]
    header = ["part", "n", "flagged", "top-1 flagged", "top-1 unflagged", "sensitivity", "specificity", "AUC"]
    print(f"threshold fitted on dev: {threshold:.4g} (flag when the best score is below it)\n")
    print("\n".join(table(header, rows)))
    atomic_write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
