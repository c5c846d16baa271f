"""Write the phenopacket sample shipped in the package (``src/medllm/data/phenopackets_sample/``) for ``make demo``.

Diseases are the sampling unit: the diseases of the developer half of
phenopacket-store outside the ``dev`` part of its disease split
(:func:`medllm.data.phenopackets.split_by_disease`, seed 0: the part
benchmarks/phenopacket_ranking.py chooses settings on) are shuffled with
``--seed`` and taken in turn, each with at most ``--per-disease`` of its cases
(a seeded choice), until ``--cases`` cases are reached. Only whole diseases are
taken, so the sample's own disease split stays disease-disjoint. The chosen
documents are copied byte for byte into ``phenopackets.zip`` in the store's
``<cohort>/<case>.json`` layout, beside the store's license. With ``--score``
it then scores the written sample as ``medllm demo`` does (the default recipe:
its test part), printing what :mod:`medllm.eval.phenopackets` reports.

    .venv/bin/python benchmarks/make_phenopacket_sample.py --source phenopacket-store-dev.zip --score

Measured here (2 shared CPU cores, busy, 2026-12-04): 301 cases, 114 diseases,
533 KiB. The test part: n = 59 cases of 23 diseases, coverage 76.3%; top-1 /
top-3 / top-10 / MRR in %, [95% disease-bootstrap interval]:

- LIRICAL-style, excluded findings used: 25.4 [12.5, 40.7] / 30.5 / 40.7 / 30.0
- LIRICAL-style, observed findings only: 27.1 [13.1, 42.6] / 33.9 / 45.8 / 33.0
- Phenomizer-style (query), observed only: 30.5 [16.1, 47.4] / 39.0 / 45.8 / 35.9
- the served ranker (Phenomizer with its corrections, pretest prior), from the
  ids and from the case as text: 37.3 [20.4, 54.8] / 44.1 / 50.8 [33.3, 70.2] / 42.2

The whole section adds 3-4 s to the demo with the knowledge base cached
(0.2 s to load), about 6.5 s when it is built first (3 s); ranking takes
10-17 ms a case for LIRICAL, 2-5 ms for Phenomizer (three runs). With 23
diseases the intervals span some 30 points: the methods do not differ
measurably here.
"""

from __future__ import annotations

import argparse
import random
import time
import zipfile
from collections import defaultdict
from pathlib import Path

from medllm.config import DEFAULT_RECIPE, load_config
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.eval.phenopackets import evaluate_phenopackets

KEYS = ("top1", "top3", "top10", "mrr")
OUT = Path(__file__).resolve().parents[1] / "src" / "medllm" / "data" / "phenopackets_sample" / "phenopackets.zip"


def choose(cases, total: int, per_disease: int, seed: int) -> list:
    """At most ``per_disease`` cases of each of a seeded sequence of whole diseases, up to ``total`` cases."""
    by_disease = defaultdict(list)
    for case in cases:
        by_disease[case.disease_ids[0] if case.disease_ids else ""].append(case)
    rng = random.Random(seed)
    diseases = sorted(by_disease)
    rng.shuffle(diseases)
    chosen: list = []
    for disease in diseases:
        if len(chosen) >= total:
            break
        members = sorted(by_disease[disease], key=lambda c: c.file)
        chosen += rng.sample(members, min(per_disease, len(members)))
    return sorted(chosen, key=lambda c: c.file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="phenopacket-store-dev.zip")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--per-disease", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--score", action="store_true", help="score the sample as the default recipe does")
    args = parser.parse_args()

    parts = split_by_disease(load_phenopackets(args.source).cases, seed=0)
    chosen = choose(parts["validation"] + parts["test"], args.cases, args.per_disease, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.source) as source, zipfile.ZipFile(args.out, "w") as out:
        for case in chosen:
            # a fixed timestamp, so the same choice writes the same bytes
            out.writestr(
                zipfile.ZipInfo(case.file, date_time=(2026, 6, 25, 0, 0, 0)),
                source.read(case.file),
                zipfile.ZIP_DEFLATED,
            )
    diseases = len({c.disease_ids[0] for c in chosen})
    print(f"wrote {args.out}: {len(chosen)} cases, {diseases} diseases ({args.out.stat().st_size / 1024:.0f} KiB)")
    if args.score:
        score(args.out)


def score(path: Path) -> None:
    """The default recipe's phenopacket section on ``path``: per method top-k and MRR with intervals."""
    config = load_config(DEFAULT_RECIPE, {"eval.phenopackets": str(path)})
    started = time.perf_counter()
    result, _ = evaluate_phenopackets(None, None, config, [])
    print(f"{result['protocol']}\nn = {result['n']}; {time.perf_counter() - started:.1f} s in all")
    for name, s in result["methods"].items():
        cells = [f"{100 * s[k]:.1f} [{100 * s['bootstrap'][k][0]:.1f}, {100 * s['bootstrap'][k][1]:.1f}]" for k in KEYS]
        print(
            f"- {name}: n {s['n']}, {s['diseases']} diseases, coverage {100 * s['coverage']:.1f}%, "
            f"top-1/3/10/MRR {' / '.join(cells)}, {s['ms_median']:.1f} ms/case"
        )


if __name__ == "__main__":
    main()
