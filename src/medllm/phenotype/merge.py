"""One knowledge-base entry per disease, however many ids it has.

SLE is ORPHA:536, OMIM:152700 and ICD10:M32.9: as three rows they split its evidence and
crowd the differential with copies. Entries are merged when a normalised name or synonym of
one equals a normalised name of another (a common row's names: its own, its ICD-10-CM
description and inclusion terms without "unspecified"/"NOS"; an OMIM/ORPHA entry's: its name).
Nothing fuzzy: "Systemic lupus erythematosus 16" stays apart from "Systemic lupus
erythematosus"; the one rewrite is Orphanet's "type" before a subtype's closing number
("Spinocerebellar ataxia type 31" is OMIM's "Spinocerebellar ataxia 31"). Entries of
different sources are also merged when their names have the same words in another order,
"type" aside: OMIM inverts its names ("Spastic paraplegia 78, autosomal recessive" is
Orphanet's "Autosomal recessive spastic paraplegia type 78"). Only where that is
unambiguous (one entry per source has those words): two OMIM entries never merge this way
("Spinal muscular atrophy, scapuloperoneal" is not "Scapuloperoneal spinal muscular
atrophy"), and hyphenated words stay whole ("cone-rod" is not "rod-cone"). The merged
entry keeps every id (the first, in ICD-10, OMIM, ORPHA order, is
its id), the common row's name, the union of the annotations (the larger frequency of a term
annotated twice) and the commonest prevalence class.
"""

from __future__ import annotations

import math
import re
import unicodedata

from medllm.knowledge import normalize_name
from medllm.phenotype.annotations import PREVALENCE_CLASSES, DiseaseAnnotations

ID_ORDER = ("ICD10:", "OMIM:", "ORPHA:")


_SUBTYPE_WORD = re.compile(r"\btype (?=\w+$)")


def merge_key(name: str) -> str:
    """The normalised name two entries of one disease share (:func:`medllm.knowledge.normalize_name`, without a
    "type" before the closing subtype number or numeral)."""
    return _SUBTYPE_WORD.sub("", normalize_name(name))


def word_key(name: str) -> str:
    """The words of a name (lower-case ASCII, hyphenated words whole) in sorted order, without "type"."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = (w.strip("-") for w in re.split(r"[^a-z0-9-]+", text))
    return " ".join(sorted(w for w in words if w and w != "type"))


def _prefix(disease: DiseaseAnnotations) -> int:
    return next((i for i, p in enumerate(ID_ORDER) if disease.id.startswith(p)), len(ID_ORDER))


def _order(disease: DiseaseAnnotations) -> tuple[int, str]:
    return _prefix(disease), disease.id


def _frequency(old: float | None, new: float) -> float:
    if old is None or math.isnan(old):
        return new
    return old if math.isnan(new) else max(old, new)


def _combine(group: list[DiseaseAnnotations]) -> DiseaseAnnotations:
    """The group's entries as one (the first gives the id, name, sex and ages)."""
    first = group[0]
    merged = DiseaseAnnotations(
        first.id,
        first.name,
        other_ids=[],
        synonyms=list(first.synonyms),
        prevalence=max((d.prevalence for d in group), key=PREVALENCE_CLASSES.index),
        sex=first.sex,
        ages=first.ages,
    )
    for disease in group:
        for term, frequency in disease.phenotypes.items():
            merged.phenotypes[term] = _frequency(merged.phenotypes.get(term), frequency)
        merged.absent |= disease.absent
        merged.onset |= disease.onset
        merged.inheritance |= disease.inheritance
        merged.other_ids += [i for i in [disease.id, *disease.other_ids] if i != first.id]
        merged.synonyms += [disease.name, *disease.synonyms] if disease is not first else []
    merged.absent -= set(merged.phenotypes)  # one source's NOT does not cancel another's finding
    merged.other_ids = list(dict.fromkeys(merged.other_ids))
    merged.synonyms = [s for s in dict.fromkeys(merged.synonyms) if s != merged.name]
    return merged


def merge_diseases(diseases: list[DiseaseAnnotations]) -> list[DiseaseAnnotations]:
    """``diseases`` with every set of entries that share a normalised name merged into one, in id order. Within a
    group the first in ICD-10, OMIM, ORPHA order leads; between two of one prefix, the earlier in ``diseases``."""
    diseases = sorted(diseases, key=_prefix)
    parent = list(range(len(diseases)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    by_words: dict[str, set[int]] = {}
    for i, disease in enumerate(diseases):
        for name in [disease.name, *disease.synonyms]:
            key = merge_key(name)
            if not key:
                continue
            if key in owner:
                parent[root(i)] = root(owner[key])
            else:
                owner[key] = i
            by_words.setdefault(word_key(name), set()).add(i)
    for members in by_words.values():  # the same words in another order: one entry per source, else ambiguous
        if len(members) > 1 and len({_prefix(diseases[i]) for i in members}) == len(members):
            first, *rest = sorted(members)
            for i in rest:
                parent[root(i)] = root(first)
    groups: dict[int, list[DiseaseAnnotations]] = {}
    for i, disease in enumerate(diseases):
        groups.setdefault(root(i), []).append(disease)
    return sorted((_combine(g) for g in groups.values()), key=_order)
