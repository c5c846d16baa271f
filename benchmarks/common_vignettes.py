"""Common and acute diseases: textbook vignettes through the API's patient-fields path, and the pretest prior's weight.

Each vignette of ``src/medllm/assets/common_vignettes.jsonl`` (written from published criteria
before the common-disease rows and the prior existed; a seeded third ``held_out``) is read as
``/v1/diagnose`` reads the patient fields: HPO findings recognised in symptoms and note, every
disease of the knowledge base (OMIM, ORPHA and the ICD-10 rows of ``medllm.phenotype.common``,
merged) ranked by the configured Phenomizer plus the weighted pretest log-prior. A hit at k:
the expected ICD-10-CM id ranks within the top k (ties pessimistic); ``ms`` is the median wall
time to recognise and rank one vignette.

The weight (:func:`medllm.phenotype.pretest.weighted_prior`: per observed finding) is chosen over
``--weights`` on the tuning vignettes and the phenopacket dev part
(disease-disjoint split, seed 0) together: the best tuning top-5 (then top-1) among weights
whose phenopacket dev MRR is within ``--mrr-tolerance`` of no prior. Held-out vignettes and the
phenopacket validation part are then scored once, at no prior and at the chosen weight.

    nice -n 19 .venv/bin/python benchmarks/common_vignettes.py            # ~3 min here

Measured here (2 shared CPU cores, 2026-12-06; 12,192 diseases, the Phenomizer's reverse and exact weights
in, the prior divided by the number of observed findings): chosen weight 0.6 (dev MRR 52.1 vs 52.2 at no
prior; 1.2 and above cost 1.2 to 3.4 points). Top-1 / top-5 in %: tuning (n=50) 74.0 / 94.0 (no prior 60.0 /
84.0); held_out (n=25) 68.0 / 80.0 (no prior 60.0 / 76.0); 5.3 ms p50 per vignette. Phenopacket validation
(n=853): top-1 57.8, top-10 68.8, MRR 62.2 (no prior 57.9 / 68.8 / 62.2). Before the division (the prior
added as is, weight 0.3 chosen the same way) held_out had 72.0 / 84.0 and validation 57.2 / 67.6 / 61.4;
before the reverse and exact weights, 60.0 / 76.0 and 53.0 / 65.4 / 58.0.

Writes ``runs/bench/common_vignettes.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from medllm.config import PhenotypeConfig
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.eval.vignettes import load_vignettes, rank_vignette, summarise_vignettes
from medllm.io import atomic_write_json
from medllm.phenotype.kb import load_knowledge_base
from medllm.phenotype.lexicon import lexicon_for
from medllm.phenotype.pretest import PriorRanker, weighted_prior
from medllm.phenotype.rank import case_terms, id_positions, load_ranker, rank_of

SAMPLE = Path("/work/shared/phenopackets/phenopacket-store-dev.zip")


def vignette_summary(kb, lexicon, weight: float, vignettes: list[dict]) -> tuple[dict, list]:
    cfg = PhenotypeConfig(prior_weight=weight)
    ranker = load_ranker(cfg, kb)
    position = id_positions(ranker)
    results = [rank_vignette(ranker, cfg, lexicon, v, position) for v in vignettes]
    return summarise_vignettes(results), results


def phenopacket_metrics(kb, cases, weights: list[float]) -> dict[float, dict]:
    """Top-1 / top-10 / MRR of the phenopacket cases at each prior weight (base scores computed once per case)."""
    cfg = PhenotypeConfig()
    ranker: PriorRanker = load_ranker(cfg, kb)
    position = id_positions(ranker)
    ranks = {w: [] for w in weights}
    for case in cases:
        terms = case_terms(kb, case.observed, case.excluded if cfg.use_excluded else ())
        base = ranker.base.score(terms.observed, terms.excluded)
        prior = ranker.prior.log_prior(case.age_years, case.sex)
        targets = [position[d] for d in case.disease_ids if d in position]
        for w in weights:
            scores = base + weighted_prior(w, prior, len(terms.observed))
            ranks[w].append(min((rank_of(scores, t) for t in targets), default=math.inf))
    out = {}
    for w, values in ranks.items():
        r = np.array(values, dtype=float)
        out[w] = {
            "n": len(r),
            "top1": float(np.mean(r <= 1)),
            "top10": float(np.mean(r <= 10)),
            "mrr": float(np.mean(1 / r)),
        }
    return out


def choose(weights, vignettes: dict[float, dict], dev: dict[float, dict], tolerance: float) -> float:
    """The best tuning top-5, then top-1, among the weights within ``tolerance`` of no prior's dev MRR."""
    floor = dev[0.0]["mrr"] - tolerance
    allowed = [w for w in weights if dev[w]["mrr"] >= floor]
    return max(allowed, key=lambda w: (vignettes[w]["tuning"]["top5"], vignettes[w]["tuning"]["top1"], -w))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.2, 1.8])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--mrr-tolerance", type=float, default=0.01)
    parser.add_argument("--limit", type=int, default=None, help="at most this many phenopackets per part")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/common_vignettes.json"))
    return parser.parse_args()


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main() -> None:
    args = parse_args()
    weights = sorted({0.0, *args.weights})
    kb, started = load_knowledge_base(), time.perf_counter()
    lexicon = lexicon_for(kb)
    everything = load_vignettes()
    tuning = [v for v in everything if v["split"] == "tuning"]
    tuned = {w: vignette_summary(kb, lexicon, w, tuning)[0] for w in weights}
    parts = split_by_disease(load_phenopackets(args.sample).cases)
    dev = phenopacket_metrics(kb, parts["dev"][: args.limit], weights)
    chosen = choose(weights, tuned, dev, args.mrr_tolerance)
    validation = phenopacket_metrics(kb, parts["validation"][: args.limit], [0.0, chosen])
    final, results = {}, {}
    for w in (0.0, chosen):
        final[w], results[w] = vignette_summary(kb, lexicon, w, everything)
    print("weight  tuning top1/top5   phenopacket dev top1/top10/MRR")
    for w in weights:
        t, d = tuned[w]["tuning"], dev[w]
        print(
            f"{w:<7g} {pct(t['top1']):>5} / {pct(t['top5']):<5}     "
            f"{pct(d['top1'])} / {pct(d['top10'])} / {pct(d['mrr'])}"
        )
    print(f"chosen weight {chosen:g}")
    for w in (0.0, chosen):
        s, v = final[w], validation[w]
        print(
            f"weight {w:g}: tuning (n={s['tuning']['n']}) {pct(s['tuning']['top1'])} / {pct(s['tuning']['top5'])}; "
            f"held_out (n={s['held_out']['n']}) {pct(s['held_out']['top1'])} / {pct(s['held_out']['top5'])}; "
            f"ms p50 {s['ms_median']:.1f}; phenopacket validation (n={v['n']}) top1 {pct(v['top1'])} "
            f"top10 {pct(v['top10'])} MRR {pct(v['mrr'])}"
        )
    atomic_write_json(
        args.out,
        {
            "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
            "machine": platform.platform(),
            "diseases": kb.n_diseases,
            "weights": weights,
            "chosen_weight": chosen,
            "tuning_by_weight": {str(w): tuned[w] for w in weights},
            "phenopacket_dev_by_weight": {str(w): dev[w] for w in weights},
            "final": {str(w): final[w] for w in final},
            "phenopacket_validation": {str(w): validation[w] for w in validation},
            "cases": {str(w): [asdict(replace(r, rank=min(r.rank, 1e9))) for r in results[w]] for w in results},
            "seconds": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
