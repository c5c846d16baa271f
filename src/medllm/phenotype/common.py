"""Common and acute diseases as knowledge-base rows, from what installs offline.

The HPO annotations hold rare diseases only, so a patient with meningitis or a pulmonary
embolism has no row to be ranked to. Three sources add them, each row keyed by its ICD-10-CM
code (id ``ICD10:<code>``, named and given synonyms from ``simple_icd_10_cm``'s description and
inclusion terms): faker-healthcare-provider's table (symptoms), clinosim's disease models
(chief complaint; incidence by age band and sex → prevalence class, ages, sex) and the curated
table ``assets/common_diseases.yaml`` (the red-flag emergencies and acute diseases those two
leave without discriminating findings, each with its published criterion). Free-text symptoms
become HPO terms through :func:`medllm.phenotype.findings.recognise`; a curated finding is an
exact HPO label. Rows sharing a code are one disease: findings united, the most frequent kept.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import yaml

from medllm.errors import MedllmError
from medllm.phenotype.annotations import PREVALENCE_CLASSES, DiseaseAnnotations
from medllm.phenotype.kb import KnowledgeBase

CURATED = Path(str(files("medllm") / "assets" / "common_diseases.yaml"))
FAKER_FREQUENCY = 0.5  # the table lists a disease's symptoms without frequencies
CLINOSIM_FREQUENCY = 0.7  # a chief complaint is what most patients present with
COMMON_INCIDENCE = 50.0  # per 100,000 a year in some age band: a clinosim model is "common" from here


def icd_names(code: str) -> list[str]:
    """The ICD-10-CM description and inclusion terms of ``code``, without "unspecified" / "NOS" qualifiers."""
    import simple_icd_10_cm as icd

    if not icd.is_valid_item(code):
        raise MedllmError(f"ICD-10-CM: {code!r} is not a code of this release")
    names = [icd.get_description(code), *icd.get_inclusion_term(code)]
    cleaned = [re.sub(r"^unspecified\s+|,?\s+(unspecified|NOS)$", "", n, flags=re.IGNORECASE) for n in names]
    return list(dict.fromkeys(cleaned))


def _label_index(kb: KnowledgeBase) -> dict[str, str]:
    return {name.lower(): term for term, name in zip(kb.term_ids.tolist(), kb.term_names.tolist())}


def recognised_terms(phrases, kb: KnowledgeBase, frequency: float, lexicon=None) -> dict[str, float]:
    """HPO terms (present, not negated) that ``recognise`` finds in the symptom phrases; unmatched phrases add none."""
    from medllm.phenotype.findings import recognise

    return {f.term_id: frequency for f in recognise(list(phrases), kb, lexicon=lexicon) if not f.excluded}


def _row(code: str, name: str, phenotypes: dict[str, float], **extra) -> DiseaseAnnotations:
    synonyms = [n for n in icd_names(code) if n.lower() != name.lower()]
    return DiseaseAnnotations(f"ICD10:{code}", name, dict(phenotypes), synonyms=synonyms, **extra)


def faker_rows(kb: KnowledgeBase, lexicon=None) -> list[DiseaseAnnotations]:
    """faker-healthcare-provider's table (:func:`medllm.knowledge.load_common_diseases`), symptoms as HPO terms."""
    from medllm.knowledge import load_common_diseases

    rows = []
    for disease in load_common_diseases():
        terms = recognised_terms([f.name for f in disease.findings], kb, FAKER_FREQUENCY, lexicon)
        row = _row(disease.icd10, disease.name, terms, prevalence="common", sex=disease.sex)
        row.synonyms += disease.synonyms
        rows.append(row)
    return rows


def _incidence_profile(incidence: dict) -> tuple[str, str | None, tuple[float, float] | None]:
    """Prevalence class, sex (when one sex has none) and the age range of the bands with any incidence."""
    bands = [(band, rates) for band, rates in incidence.items() if rates.get("M", 0) or rates.get("F", 0)]
    if not bands:
        return "uncommon", None, None
    peak = max(max(r.get("M", 0), r.get("F", 0)) for _, r in bands)
    males, females = (sum(r.get(s, 0) for _, r in bands) for s in ("M", "F"))
    sex = "female" if not males else "male" if not females else None
    bounds = [[float(x) for x in re.findall(r"\d+", band)] for band, _ in bands]
    ages = (min(b[0] for b in bounds), max(b[-1] if len(b) > 1 else 130.0 for b in bounds))
    return ("common" if peak >= COMMON_INCIDENCE else "uncommon"), sex, ages


def clinosim_rows(kb: KnowledgeBase, lexicon=None) -> list[DiseaseAnnotations]:
    """clinosim's disease models with US incidence data (its trauma scenarios have none): the chief complaint's
    findings, named by the primary ICD-10-CM code."""
    import clinosim

    rows = []
    folder = Path(clinosim.__file__).parent / "modules" / "disease" / "reference_data"
    for path in sorted(folder.glob("*.yaml")):
        model = yaml.safe_load(path.read_text(encoding="utf-8"))
        incidence = (model.get("incidence") or {}).get("us")
        if not incidence:
            continue
        code = model["icd_codes"]["primary"]
        complaint = model["chief_complaint"]["en"].split(",")
        prevalence, sex, ages = _incidence_profile(incidence)
        terms = recognised_terms(complaint, kb, CLINOSIM_FREQUENCY, lexicon)
        rows.append(_row(code, icd_names(code)[0], terms, prevalence=prevalence, sex=sex, ages=ages))
    return rows


def _check_entry(entry: dict, where: str) -> None:
    import simple_icd_10_cm as icd

    for key in ("name", "icd10", "prevalence", "findings", "source"):
        if not entry.get(key):
            raise MedllmError(f"{where}: field '{key}' missing")
    if not icd.is_valid_item(str(entry["icd10"])):
        raise MedllmError(f"{where}: icd10 {entry['icd10']!r} is not a code of ICD-10-CM")
    if entry["prevalence"] not in PREVALENCE_CLASSES:
        raise MedllmError(f"{where}: prevalence must be one of {', '.join(PREVALENCE_CLASSES)}")
    if entry.get("sex") not in (None, "female", "male"):
        raise MedllmError(f"{where}: sex must be female or male")


def read_curated(path: str | Path, kb: KnowledgeBase) -> tuple[list[DiseaseAnnotations], dict[str, str]]:
    """The curated rows, and the prevalence class the table gives other sources' codes; a clear error naming the
    entry for a missing field, an unknown HPO label, a frequency outside (0, 1] or an unknown ICD-10-CM code."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    labels, rows = _label_index(kb), []
    for i, entry in enumerate(doc.get("diseases") or []):
        where = f"{path}: diseases.{i} ({entry.get('name', '?')})"
        _check_entry(entry, where)
        phenotypes = {}
        for label, frequency in entry["findings"].items():
            if str(label).lower() not in labels:
                raise MedllmError(f"{where}: {label!r} is not an HPO term label (HPO {kb.release})")
            if not 0 < float(frequency) <= 1:
                raise MedllmError(f"{where}: frequency of {label!r} must be in (0, 1]")
            phenotypes[labels[str(label).lower()]] = float(frequency)
        ages = tuple(float(a) for a in entry["ages"]) if entry.get("ages") else None
        row = _row(entry["icd10"], entry["name"], phenotypes, prevalence=entry["prevalence"], sex=entry.get("sex"))
        row.ages, row.synonyms = ages, [*entry.get("synonyms", []), *row.synonyms]
        rows.append(row)
    overrides = {code: cls for cls, codes in (doc.get("prevalence") or {}).items() for code in codes}
    return rows, overrides


def _absorb(kept: DiseaseAnnotations, row: DiseaseAnnotations) -> None:
    """``row`` (same code, a later source) into ``kept``: findings united at their larger frequency; the earlier
    source's name, prevalence class, sex and ages stand."""
    for term, frequency in row.phenotypes.items():
        kept.phenotypes[term] = max(kept.phenotypes.get(term, 0.0), frequency)
    kept.synonyms = list(dict.fromkeys([*kept.synonyms, row.name, *row.synonyms]))
    kept.sex = kept.sex or row.sex
    kept.ages = kept.ages or row.ages


def common_diseases(kb: KnowledgeBase, curated: str | Path | None = CURATED, packages: bool = True):
    """Every common-disease row, one per ICD-10-CM code: the curated table first (its name and ages win), then
    faker-healthcare-provider and clinosim (``packages``)."""
    from medllm.phenotype.lexicon import lexicon_for

    rows, overrides = read_curated(curated, kb) if curated is not None else ([], {})
    if packages:
        lexicon = lexicon_for(kb)
        faker = faker_rows(kb, lexicon)
        for row in faker:
            row.prevalence = overrides.get(row.id.removeprefix("ICD10:"), row.prevalence)
        rows += faker + clinosim_rows(kb, lexicon)
    by_code: dict[str, DiseaseAnnotations] = {}
    for row in rows:
        if row.id in by_code:
            _absorb(by_code[row.id], row)
        else:
            by_code[row.id] = row
    return [row for row in by_code.values() if row.phenotypes]
