"""Numbered subtype series: "Leber congenital amaurosis 6" and "... 9" are one clinical picture.

OMIM numbers the genetic subtypes of one phenotype (its phenotypic series: Bardet-Biedl
syndrome 1-26, Loeys-Dietz syndrome 1-6); they differ by gene, rarely by findings, so a
phenotype ranking often puts a sibling of the patient's subtype first. The series of a
disease is read from its name: the name without its one closing subtype number ("type"
and a letter suffix included: "Cardiomyopathy, dilated, 1A", "Spinocerebellar ataxia type
31"), compared as sorted words so OMIM's inverted names meet Orphanet's. A name with no
such number, or several, is a series of its own. The API marks the entries of one series
in a differential, and the evaluation counts a series-level rank beside the exact one.
"""

from __future__ import annotations

import re

import numpy as np

from medllm.phenotype.merge import word_key

_SUBTYPE_NUMBER = re.compile(r"(?:,\s*|\s+)(?:type\s+)?\d+[a-z]{0,2}(?=\s*,|\s*$)", re.IGNORECASE)


def series_name(name: str) -> str | None:
    """The name without its subtype number ("Microcephaly 5, primary" → "Microcephaly, primary"); None when
    the name has no closing number (before a comma or at the end) or more than one."""
    if len(_SUBTYPE_NUMBER.findall(name)) != 1:
        return None
    return _SUBTYPE_NUMBER.sub("", name).strip(" ,") or None


def series_groups(names: np.ndarray) -> np.ndarray:
    """An integer per name: equal for the names of one series, unique for a name in no series."""
    keys: dict[str, int] = {}
    groups = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        stem = series_name(str(name))
        groups[i] = keys.setdefault(word_key(stem) if stem else f"\0{i}", len(keys))
    return groups


def series_rank(scores: np.ndarray, groups: np.ndarray, targets: list[int]) -> float:
    """1-based rank of the targets' series when each series counts once, at its best member's score (ties
    pessimistic); inf without a target."""
    if not targets:
        return float("inf")
    best = np.full(groups.max() + 1, -np.inf)
    np.maximum.at(best, groups, scores)
    return int(np.sum(best >= max(best[groups[t]] for t in targets)))
