"""Disease annotations from ``phenotype.hpoa``: phenotypes with frequencies, ``NOT`` rows, onset, inheritance."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

# HPO frequency classes (HP:0040279 subtree) as probabilities: the middle of each class's range.
FREQUENCY_CLASSES = {
    "HP:0040280": 1.0,  # obligate
    "HP:0040281": 0.9,  # very frequent, 80-99%
    "HP:0040282": 0.55,  # frequent, 30-79%
    "HP:0040283": 0.17,  # occasional, 5-29%
    "HP:0040284": 0.025,  # very rare, 1-4%
    "HP:0040285": 0.0,  # excluded
}
DEFAULT_PREFIXES = ("OMIM:", "ORPHA:")
PREVALENCE_CLASSES = ("rare", "uncommon", "common")  # how often a disease is met, least first
# Onset terms (aspect C) → the age range in years a disease with that onset presents in.
ONSET_AGES = {
    "HP:0030674": (0, 0),  # antenatal
    "HP:0003577": (0, 0),  # congenital
    "HP:0003623": (0, 0.08),  # neonatal
    "HP:0003593": (0.1, 1),  # infantile
    "HP:0011463": (1, 5),  # childhood
    "HP:0003621": (5, 15),  # juvenile
    "HP:0410280": (0.1, 15),  # pediatric
    "HP:0011462": (16, 40),  # young adult
    "HP:0003596": (40, 60),  # middle age
    "HP:0003584": (60, 80),  # late
    "HP:0003581": (16, 60),  # adult
}


def parse_frequency(raw: str) -> float:
    """``"3/7"``, ``"40%"`` or an HPO frequency class → a probability; blank → NaN (not given)."""
    raw = (raw or "").strip()
    if not raw:
        return math.nan
    if raw in FREQUENCY_CLASSES:
        return FREQUENCY_CLASSES[raw]
    if raw.endswith("%"):
        return float(raw[:-1]) / 100
    if "/" in raw:
        num, den = (int(x) for x in raw.split("/"))
        return num / den if den else math.nan
    raise ValueError(f"unknown frequency {raw!r}")


@dataclass
class DiseaseAnnotations:
    id: str
    name: str
    phenotypes: dict[str, float] = field(default_factory=dict)  # term → frequency (NaN: not given)
    absent: set[str] = field(default_factory=set)  # NOT rows and 0/n frequencies
    onset: set[str] = field(default_factory=set)  # aspect C
    inheritance: set[str] = field(default_factory=set)  # aspect I
    other_ids: list[str] = field(default_factory=list)  # the same disease under other ids (ICD10:, ORPHA:, OMIM:)
    synonyms: list[str] = field(default_factory=list)  # other names it is merged by
    prevalence: str = "rare"  # one of PREVALENCE_CLASSES
    sex: str | None = None  # "female" / "male" when only that sex has it
    ages: tuple[float, float] | None = None  # the age range (years) it presents in, when known


def _merge_frequency(old: float | None, new: float) -> float:
    if old is None or math.isnan(old):
        return new
    return old if math.isnan(new) else max(old, new)


def _add_row(disease: DiseaseAnnotations, row: dict) -> None:
    term, aspect = row["hpo_id"], row["aspect"]
    if aspect == "C":
        disease.onset.add(term)
    elif aspect == "I":
        disease.inheritance.add(term)
    elif aspect == "P":
        frequency = parse_frequency(row["frequency"])
        if row["qualifier"] == "NOT" or frequency == 0:
            disease.absent.add(term)
        else:
            disease.phenotypes[term] = _merge_frequency(disease.phenotypes.get(term), frequency)


def read_hpoa(path: str | Path, prefixes: tuple[str, ...] = DEFAULT_PREFIXES) -> tuple[list[DiseaseAnnotations], str]:
    """Diseases whose id starts with one of ``prefixes`` (sorted by id), and the release (``#version``)."""
    diseases: dict[str, DiseaseAnnotations] = {}
    release = ""
    with open(path, encoding="utf-8", newline="") as fh:
        header = None
        for line in fh:
            if line.startswith("#version:"):
                release = line.split(":", 1)[1].strip()
            if not line.startswith("#"):
                header = line.rstrip("\n").split("\t")
                break
        if header is None:
            raise ValueError(f"{path}: no header row")
        for row in csv.DictReader(fh, fieldnames=header, delimiter="\t", quoting=csv.QUOTE_NONE):
            if not row["database_id"].startswith(prefixes):
                continue
            disease = diseases.get(row["database_id"])
            if disease is None:
                disease = diseases[row["database_id"]] = DiseaseAnnotations(row["database_id"], row["disease_name"])
            _add_row(disease, row)
    return [diseases[key] for key in sorted(diseases)], release
