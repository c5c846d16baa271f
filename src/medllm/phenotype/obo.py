"""The HPO term graph from ``hp.obo``: terms, is-a parents, synonyms, and old ids (alt_id, replaced_by)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)" (EXACT|RELATED|BROAD|NARROW)(?: ([A-Za-z_:0-9]+))? \[')


@dataclass
class OboTerm:
    id: str
    name: str = ""
    parents: list[str] = field(default_factory=list)
    alt_ids: list[str] = field(default_factory=list)
    replaced_by: str | None = None
    obsolete: bool = False
    synonyms: list[tuple[str, str, str | None]] = field(default_factory=list)  # (text, scope, type)


def _apply(term: OboTerm, key: str, value: str) -> None:
    if key == "synonym":
        if match := SYNONYM.match(value):
            term.synonyms.append((match.group(1).replace('\\"', '"'), match.group(2), match.group(3)))
        return
    value = value.split(" ! ")[0].strip()
    if key == "name":
        term.name = value
    elif key == "is_a":
        term.parents.append(value.split()[0])
    elif key == "alt_id":
        term.alt_ids.append(value)
    elif key == "replaced_by":
        term.replaced_by = value
    elif key == "is_obsolete":
        term.obsolete = value == "true"


def parse_obo(path: str | Path) -> list[OboTerm]:
    """Every ``[Term]`` stanza of an OBO file, in file order (obsolete ones included)."""
    terms: list[OboTerm] = []
    current: OboTerm | None = None
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith("["):
                current = None
                if line == "[Term]":
                    current = OboTerm(id="")
                    terms.append(current)
                continue
            if current is None or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            if key == "id":
                current.id = value.strip()
            else:
                _apply(current, key, value)
    return [term for term in terms if term.id]


def alias_map(terms: list[OboTerm]) -> dict[str, str]:
    """Old id → current id: every ``alt_id``, and obsolete terms with a ``replaced_by`` (followed to the end)."""
    live = {term.id for term in terms if not term.obsolete}
    aliases = {alt: term.id for term in terms if not term.obsolete for alt in term.alt_ids}
    replaced = {term.id: term.replaced_by for term in terms if term.obsolete and term.replaced_by}
    for old, new in replaced.items():
        seen = {old}
        while new in replaced and new not in seen:
            seen.add(new)
            new = replaced[new]
        new = aliases.get(new, new)
        if new in live:
            aliases[old] = new
    return aliases
