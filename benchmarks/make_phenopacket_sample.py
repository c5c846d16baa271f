"""Write the phenopacket sample shipped in the package (``src/medllm/data/phenopackets_sample/``) for ``make demo``.

Diseases are the sampling unit: the diseases of the developer half of
phenopacket-store outside the ``dev`` part of its disease split
(:func:`medllm.data.phenopackets.split_by_disease`, seed 0: the part
benchmarks/phenopacket_ranking.py chooses settings on) are shuffled with
``--seed`` and taken in turn, each with at most ``--per-disease`` of its cases
(a seeded choice), until ``--cases`` cases are reached. Only whole diseases are
taken, so the sample's own disease split stays disease-disjoint. The chosen
documents are copied byte for byte into ``phenopackets.zip`` in the store's
``<cohort>/<case>.json`` layout, beside the store's license.

    .venv/bin/python benchmarks/make_phenopacket_sample.py --source phenopacket-store-dev.zip
"""

from __future__ import annotations

import argparse
import random
import zipfile
from collections import defaultdict
from pathlib import Path

from medllm.data.phenopackets import load_phenopackets, split_by_disease

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


if __name__ == "__main__":
    main()
