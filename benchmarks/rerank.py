"""The model as a re-ranker of the phenotype ranking: time per case, and top-1 fused vs phenotype alone.

Real published cases (``--phenopackets``, default the shared developer half of phenopacket-store), split by
disease (:func:`medllm.data.phenopackets.split_by_disease`, seed 0). The fusion weight and temperature are
fitted on a seeded sample of ``--fit-cases`` dev cases (K = 10) and scored on a seeded sample of ``--cases``
validation cases: top-1 of the served phenotype ranking (its order, ties by disease id) and of the fused ranking,
with Wilson intervals, the exact McNemar test and the ECE of the fused confidence. Timing: on the first
``--time-cases`` validation cases, the phenotype ranking alone (score every disease and sort) and the
re-ranker (that, the top K's evidence and the model's one batched pass) for each K of ``--k``; medians.

The model is the config's (default the embedded SmolLM2-135M-Instruct, dtype auto: bfloat16 on this CPU),
base weights unless ``--adapter``. Run with nice on a shared machine; CPU contention inflates the times.

    nice -n 19 .venv/bin/python benchmarks/rerank.py                      # ~15 min on 2 shared cores

Writes ``runs/bench/rerank.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from medllm.config import load_config
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.eval.rerank import fused_results, model_scores, phenotype_results, prepare
from medllm.eval.stats import calibration, paired_comparison, wilson_interval
from medllm.models import load_model, load_tokenizer
from medllm.phenotype.fusion import fit
from medllm.phenotype.kb import load_knowledge_base
from medllm.phenotype.rank import case_scores, case_terms, load_ranker, ranking

SHARED = Path("/work/shared/phenopackets/phenopacket-store-dev.zip")


def _sample(cases: list, n: int) -> list:
    return random.Random(0).sample(cases, min(n, len(cases)))


def _timing(model, tokenizer, ranker, cases, ks) -> dict:
    """Median seconds per case: the phenotype ranking alone, and the re-ranker at each K (same cases, same run)."""
    alone = []
    for case in cases:
        start = time.perf_counter()
        terms = case_terms(ranker.kb, case.observed, case.excluded)
        ranking(ranker, case_scores(ranker, terms, case.age_years, case.sex))
        alone.append(time.perf_counter() - start)
    out = {"n": len(cases), "phenotype_alone_s": float(np.median(alone))}
    for k in ks:
        seconds = []
        for case in cases:
            start = time.perf_counter()
            model_scores(model, tokenizer, prepare(ranker, [case], k, True), seed=0)
            seconds.append(time.perf_counter() - start)
        out[f"rerank_k{k}_s"] = float(np.median(seconds))
    return out


def _top1(results) -> dict:
    hits = [r.rank == 1 for r in results]
    return {"top1": float(np.mean(hits)), "hits": int(sum(hits)), "wilson": wilson_interval(sum(hits), len(hits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phenopackets", type=Path, default=SHARED)
    parser.add_argument("--config", default="smollm2-135m-lora")
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--fit-cases", type=int, default=40)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--time-cases", type=int, default=10)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/rerank.json"))
    args = parser.parse_args()

    config = load_config(args.config)
    parts = split_by_disease(load_phenopackets(args.phenopackets).cases)
    dev, validation = _sample(parts["dev"], args.fit_cases), _sample(parts["validation"], args.cases)
    ranker = load_ranker(config.phenotype, load_knowledge_base())
    tokenizer, model = load_tokenizer(config.model), load_model(config.model, args.adapter)
    timing = _timing(model, tokenizer, ranker, validation[: args.time_cases], args.k)
    print(json.dumps(timing, indent=1))

    fitted, scored = (prepare(ranker, c, 10, config.phenotype.use_excluded) for c in (dev, validation))
    fusion = fit(model_scores(model, tokenizer, fitted, 0)[0])
    val_scored, seconds = model_scores(model, tokenizer, scored, 0)
    fused, phenotype = fused_results(fusion, scored, val_scored, seconds), phenotype_results(scored)
    result = {
        "protocol": f"fit on {len(dev)} dev cases, scored on {len(validation)} validation cases (seeded samples of a "
        f"disease-disjoint split of {args.phenopackets.name}); K = 10; model {config.model.name}, dtype "
        f"{model.dtype}, adapter {args.adapter}",
        "timing": timing,
        "fusion": asdict(fusion),
        "phenotype": _top1(phenotype),
        "fused": _top1(fused),
        "fused_vs_phenotype": paired_comparison([r.rank == 1 for r in fused], [r.rank == 1 for r in phenotype]),
        "calibration": calibration(
            [float(fusion.confidences(s).max()) for s in val_scored], [r.rank == 1 for r in fused]
        ),
        "gold_in_top10": sum(p.gold is not None for p in scored),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "calibration"}, indent=1))
    print("ECE", result["calibration"]["ece"])


if __name__ == "__main__":
    main()
