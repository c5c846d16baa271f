"""GA4GH Phenopacket v2 cases from a folder or a zip (phenopacket-store's release layout).

The store's release archive holds ``<cohort>/<case>.json``: one Phenopacket v2
JSON document per individual, with observed and excluded HPO terms
(``phenotypicFeatures``, ``excluded: true``), sex, age and one confirmed
diagnosis (``interpretations[].diagnosis.disease`` and ``diseases``). A folder
is searched recursively for ``*.json``; a case's cohort is its parent folder.

A document that is not valid JSON, not a phenopacket, or has no phenotypic
features is skipped; its file name and the reason are kept in
:attr:`PhenopacketLoad.skipped`.
"""

from __future__ import annotations

import json
import random
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from medllm.errors import MedllmError

_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^P(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T.*)?$")
# Representative ages (years) of HPO onset classes, for ages given as an ontology class.
ONSET_CLASS_YEARS = {
    "HP:0030674": 0.0,  # antenatal
    "HP:0011460": 0.0,  # embryonal
    "HP:0011461": 0.0,  # fetal
    "HP:0003577": 0.0,  # congenital
    "HP:0003623": 0.04,  # neonatal
    "HP:0003593": 0.5,  # infantile
    "HP:0011463": 3.0,  # childhood
    "HP:0003621": 10.0,  # juvenile
    "HP:0410280": 8.0,  # pediatric
    "HP:0011462": 25.0,  # young adult
    "HP:0003581": 35.0,  # adult
    "HP:0003596": 50.0,  # middle age
    "HP:0003584": 70.0,  # late
}


@dataclass(frozen=True)
class PhenopacketCase:
    id: str
    cohort: str
    observed: tuple[str, ...]
    excluded: tuple[str, ...]
    sex: str | None  # "male", "female", or None when unknown
    age_years: float | None  # at last encounter
    onset_years: float | None  # of the disease, when given
    disease_ids: tuple[str, ...]
    disease_label: str
    file: str


@dataclass
class PhenopacketLoad:
    cases: list[PhenopacketCase] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file name → reason

    def __iter__(self) -> Iterator[PhenopacketCase]:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)


def parse_age(element: dict | None) -> float | None:
    """A phenopacket ``TimeElement`` (ISO 8601 duration, ontology class, gestational age) in years."""
    if not element:
        return None
    if "age" in element:
        match = _DURATION.match(element["age"].get("iso8601duration", "").strip())
        if not match or not any(match.groups()):
            return None
        years, months, weeks, days = (float(g) if g else 0.0 for g in match.groups())
        return years + months / 12 + weeks * 7 / 365.25 + days / 365.25
    if "gestationalAge" in element:
        return 0.0
    if "ontologyClass" in element:
        return ONSET_CLASS_YEARS.get(element["ontologyClass"].get("id", ""))
    return None


def _sex(raw: str | None) -> str | None:
    return {"MALE": "male", "FEMALE": "female"}.get((raw or "").upper())


def _diagnosis(doc: dict) -> tuple[tuple[str, ...], str, float | None]:
    ids, label, onset = [], "", None
    for interpretation in doc.get("interpretations", []):
        disease = interpretation.get("diagnosis", {}).get("disease", {})
        if disease.get("id") and disease["id"] not in ids:
            ids.append(disease["id"])
            label = label or disease.get("label", "")
    for disease in doc.get("diseases", []):
        if disease.get("excluded"):
            continue
        term = disease.get("term", {})
        if term.get("id") and term["id"] not in ids:
            ids.append(term["id"])
            label = label or term.get("label", "")
        onset = onset if onset is not None else parse_age(disease.get("onset"))
    return tuple(ids), label, onset


def parse_phenopacket(doc: dict, file: str = "", cohort: str = "") -> PhenopacketCase:
    """One case from an already-loaded document (a file's, or an API request's); ``ValueError`` when unusable."""
    if not isinstance(doc, dict) or "id" not in doc:
        raise ValueError("not a phenopacket (no id)")
    observed, excluded = [], []
    for feature in doc.get("phenotypicFeatures") or []:
        term_id = (feature.get("type") or {}).get("id")
        if not term_id:
            raise ValueError("phenotypic feature without a type id")
        (excluded if feature.get("excluded") else observed).append(term_id)
    if not observed and not excluded:
        raise ValueError("no phenotypic features")
    subject = doc.get("subject") or {}
    disease_ids, label, onset = _diagnosis(doc)
    return PhenopacketCase(
        id=str(doc["id"]),
        cohort=cohort,
        observed=tuple(dict.fromkeys(observed)),
        excluded=tuple(dict.fromkeys(excluded)),
        sex=_sex(subject.get("sex")),
        age_years=parse_age(subject.get("timeAtLastEncounter")),
        onset_years=onset,
        disease_ids=disease_ids,
        disease_label=label,
        file=file,
    )


def documents(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """(file name, cohort, raw bytes) for every JSON document under a folder or in a zip."""
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            rel = file.relative_to(path)
            yield rel.as_posix(), rel.parent.name or path.name, file.read_bytes()
        return
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if name.endswith(".json") and not name.startswith("__MACOSX/"):
                posix = PurePosixPath(name)
                yield name, posix.parent.name or path.stem, archive.read(name)


def load_phenopackets(path: str | Path) -> PhenopacketLoad:
    """All cases under ``path`` (a folder searched recursively for ``*.json``, or a ``.zip``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MedllmError(f"phenopackets: {path} does not exist")
    if not path.is_dir() and not zipfile.is_zipfile(path):
        raise MedllmError(f"phenopackets: {path} is neither a folder nor a zip archive")
    result = PhenopacketLoad()
    for name, cohort, raw in documents(path):
        try:
            result.cases.append(parse_phenopacket(json.loads(raw), name, cohort))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            result.skipped[name] = f"{type(exc).__name__}: {exc}"
    return result


def split_by_disease(
    cases: list[PhenopacketCase], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, list[PhenopacketCase]]:
    """``dev``/``validation``/``test`` parts with no diagnosis shared between parts.

    The diagnosis key is a case's first disease id; the sorted keys are shuffled
    with ``seed`` and cut by ``fractions`` (of diseases, not cases), so the
    split depends only on the set of diseases and the seed.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise MedllmError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    keys = sorted({case.disease_ids[0] if case.disease_ids else "" for case in cases})
    random.Random(seed).shuffle(keys)
    cut1 = round(fractions[0] * len(keys))
    cut2 = cut1 + round(fractions[1] * len(keys))
    part_of = {key: ("dev" if i < cut1 else "validation" if i < cut2 else "test") for i, key in enumerate(keys)}
    parts: dict[str, list[PhenopacketCase]] = {"dev": [], "validation": [], "test": []}
    for case in cases:
        parts[part_of[case.disease_ids[0] if case.disease_ids else ""]].append(case)
    return parts


def dev_halves(dev: list[PhenopacketCase], seed: int = 0) -> dict[str, list[PhenopacketCase]]:
    """The dev part cut in two disease-disjoint halves: ``train`` (re-rank training rows, ``medllm data``) and
    ``fit`` (the re-ranker's fusion weight and temperature, ``medllm eval``), so the weight is never fitted on
    cases the model was trained on."""
    parts = split_by_disease(dev, (0.5, 0.5, 0.0), seed)
    return {"train": parts["dev"], "fit": parts["validation"]}
