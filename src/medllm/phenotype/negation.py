"""Which words of a text sit in the scope of a negation cue, in the manner of NegEx (Chapman et al. 2001).

A *pre* cue ("no", "denies", "without", "negative for", "Excluded:") negates what follows it up to
the end of its clause: the scope runs over commas and coordination ("no fever, cough or rash")
and stops at a sentence end, ";", or a word that turns the clause ("but", "however", "although",
"except", "reports" ...). A *post* cue ("... were absent", "... was ruled out") negates the words
before it back to the start of its clause or an affirming word ("has", "with", "present").
Pseudo-negations ("not only", "cannot be excluded", "not ruled out") are skipped: they negate
nothing and are not read as cues. A cue written inside a recognised finding ("Absent thumb") is
part of that finding, not a negation, and a turning word inside one ("Seizures with onset later in
life") does not end a scope.
"""

from __future__ import annotations

from medllm.phenotype.lexicon import Token, fold

PRE = "pre"
POST = "post"
BOTH = "both"
PSEUDO = "pseudo"

_CONTRACTED = [(w, "t") for w in ("didn", "doesn", "don", "isn", "wasn", "weren", "hasn", "hadn", "haven")]
CUES: dict[tuple[str, ...], str] = {
    **{(w,): PRE for w in ("no", "not", "denies", "deny", "denying", "without", "nor", "neither", "never", "lacks")},
    **dict.fromkeys(_CONTRACTED, PRE),
    **{(w,): BOTH for w in ("absent", "denied")},
    ("absence", "of"): PRE,
    ("lack", "of"): PRE,
    ("negative", "for"): PRE,
    ("free", "of"): PRE,
    ("no", "evidence", "of"): PRE,
    ("ruled", "out"): BOTH,
    ("rules", "out"): PRE,
    **{(w, ":"): PRE for w in ("excluded", "absent", "negative", "denied", "denies", "none")},
    **{(w,): POST for w in ("excluded", "negative")},
    **{("not", w): POST for w in ("present", "seen", "observed", "found", "detected", "noted", "identified")},
    **dict.fromkeys(
        (
            ("not", "only"),
            ("not", "necessarily"),
            ("no", "change"),
            ("no", "increase"),
            ("not", "ruled", "out"),
            ("not", "been", "ruled", "out"),
            ("not", "excluded"),
            ("not", "been", "excluded"),
            ("cannot", "be", "excluded"),
            ("cannot", "be", "ruled", "out"),
            ("could", "not", "be", "excluded"),
            ("could", "not", "be", "ruled", "out"),
        ),
        PSEUDO,
    ),
}
_LONGEST = max(len(cue) for cue in CUES)
SENTENCE_END = frozenset({";", ".", "!", "?", "\n"})
TURNING = frozenset(
    {"but", "however", "although", "though", "except", "yet", "whereas", "apart", "aside", "besides", "nevertheless"}
)
AFFIRMING_AFTER = frozenset(
    {"reports", "reported", "reporting", "endorses", "endorsed", "complains", "presents", "presented", "shows"}
    | {"showed", "exhibits", "exhibited", "demonstrates", "demonstrated", "which", "who"}
    | {"developed", "develops", "started", "began", "begun", "later", "now"}
)
AFFIRMING_BEFORE = AFFIRMING_AFTER | frozenset(
    {"with", "has", "had", "have", "present", "seen", "noted", "including", "includes"}
)


def _word(token: Token) -> str:
    return fold(token.raw).lower() if token.kind == "word" else token.raw


def find_cues(tokens: list[Token], blocked: set[int]) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each cue, longest first at each position, skipping tokens in ``blocked``."""
    words = [_word(t) for t in tokens]
    cues, i = [], 0
    while i < len(tokens):
        for length in range(min(_LONGEST, len(tokens) - i), 0, -1):
            kind = CUES.get(tuple(words[i : i + length]))
            if kind and not blocked.intersection(range(i, i + length)):
                cues.append((i, i + length, kind))
                i += length
                break
        else:
            i += 1
    return cues


def _stops(token: Token, word: str, affirming: frozenset[str]) -> bool:
    return (token.kind == "punct" and token.raw in SENTENCE_END) or word in TURNING or word in affirming


_COPULA = frozenset({"is", "are", "was", "were", "been", "be"})


def _direction(kind: str, start: int, words: list[str], blocked: set[int]) -> str:
    """A cue that can go either way ("absent", "denied") looks back right after a finding or "was", else forward."""
    if kind != BOTH:
        return kind
    before = start - 1 if start > 0 and words[start - 1] != ":" else start - 2
    return POST if before >= 0 and (before in blocked or words[before] in _COPULA) else PRE


def negated(tokens: list[Token], blocked: set[int]) -> list[bool]:
    """For each token, whether a negation cue's scope covers it."""
    words = [_word(t) for t in tokens]
    out = [False] * len(tokens)
    for start, end, kind in find_cues(tokens, blocked):
        kind = _direction(kind, start, words, blocked)
        if kind == PRE:
            j = end
            while j < len(tokens) and (j in blocked or not _stops(tokens[j], words[j], AFFIRMING_AFTER)):
                out[j] = True
                j += 1
        if kind == POST:
            j = start - 1
            while j >= 0 and (j in blocked or not _stops(tokens[j], words[j], AFFIRMING_BEFORE)):
                out[j] = True
                j -= 1
    return out
