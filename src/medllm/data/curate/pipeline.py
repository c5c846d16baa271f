"""Curation of seed-dataset records into leakage-free train/validation/test splits, with a data card.

The steps are small generators over the records of :mod:`medllm.data.sources`
(``{source, id, group, task, messages, reference, license, meta}``), each
counting what came in, went out and was dropped, per source, in a
:class:`Tally`. :func:`curate` is the recipe that chains them::

    normalize → scrub → length → dedupe (exact, near) → group split → cap
              → decontaminate (train) → weight (train)

Decontamination comes after the split because the held-out test split is one
of the texts the training split must not overlap. Dedupe and decontamination
keep compact state (16-byte hashes, MinHash signatures and LSH buckets,
8-byte n-gram hashes), never copies of texts; the records of the output are
kept, as they are the dataset. :func:`write_data_card` writes what was done
and to what, with the sources' licenses and access terms.

Scrubbing is pattern-based and catches identifiers that survive in free text
(an email, a phone number, a record number, a date); it is no substitute for
the sources' own de-identification, and MIMIC's ``___`` spans are left as
they are.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path

import numpy as np

from medllm.data.sources import SOURCES, LoadStats, SourceInfo
from medllm.errors import MedllmError
from medllm.io import atomic_write_json, atomic_write_text, save_figure
from medllm.markdown import table

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
STEPS = ("normalize", "scrub", "length", "dedupe", "split", "cap", "decontaminate", "weight")
TRAIN_ONLY = ("decontaminate", "weight")  # steps applied to the training split only
MAX_EXAMPLES = 5  # dropped records kept as examples, per step and reason
TEST_SPLIT_SET = "test_split"  # the evaluation set of the test split's own texts
SCRUB_KINDS = ("email", "phone", "id", "date")
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "id": "[ID]", "date": "[DATE]"}
CARD_EXAMPLES = 3
CARD_TRUNCATE = 400  # characters of an example's prompt shown in the card


@dataclass
class CurateConfig:
    """The knobs of :func:`curate`; a plain dict with these keys works too (:meth:`from_value`).

    ``mixture`` maps a source to ``{"cap": N, "weight": w}`` (either or both):
    ``cap`` bounds the source's records over all splits (a seeded uniform
    sample, kept in the split proportions), ``weight`` its relative share of
    the training split (weights only downsample; give every training source
    a weight, or none).
    """

    normalize: bool = True
    scrub: bool = True
    min_tokens: int = 16
    max_tokens: int = 4096
    length_batch_size: int = 256
    near_threshold: float | None = 0.8  # None: exact dedupe only
    num_perm: int = 128
    shingle_words: int = 5
    decontam_ngram: int = 8
    decontam_max_groups: int = 10
    decontaminate_test_split: bool = True
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    split_seed: str = "medllm"
    mixture: dict[str, dict] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def from_value(cls, value: CurateConfig | Mapping | None) -> CurateConfig:
        """A config from itself, a dict (unknown keys are an error) or None (the defaults); validated."""
        if value is None:
            config = cls()
        elif isinstance(value, cls):
            config = value
        elif isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise MedllmError(
                    f"curate: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
                )
            config = cls(**value)
        else:
            raise MedllmError(f"curate: expected a CurateConfig or a dict, got {type(value).__name__}")
        config.check()
        return config

    def check(self) -> None:
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise MedllmError(f"curate: need 0 <= min_tokens <= max_tokens (got {self.min_tokens}, {self.max_tokens})")
        if self.near_threshold is not None and not 0 < self.near_threshold <= 1:
            raise MedllmError(f"curate: near_threshold must be in (0, 1] or null (got {self.near_threshold})")
        if self.shingle_words < 1 or self.decontam_ngram < 1 or self.num_perm < 2 or self.decontam_max_groups < 1:
            raise MedllmError(
                "curate: shingle_words, decontam_ngram and decontam_max_groups must be >= 1, num_perm >= 2"
            )
        check_fractions(self.fractions)
        for source, mix in self.mixture.items():
            if not isinstance(mix, Mapping) or set(mix) - {"cap", "weight"}:
                raise MedllmError(f"curate: mixture.{source} must be {{cap: N, weight: w}} (got {mix!r})")
            cap, weight = mix.get("cap"), mix.get("weight")
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
                raise MedllmError(f"curate: mixture.{source}.cap must be a whole number >= 0 (got {cap!r})")
            if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0):
                raise MedllmError(f"curate: mixture.{source}.weight must be a number >= 0 (got {weight!r})")


def check_fractions(fractions: Mapping[str, float]) -> None:
    unknown = set(fractions) - set(SPLITS)
    if (
        unknown
        or not fractions
        or any(f < 0 for f in fractions.values())
        or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6)
    ):
        raise MedllmError(
            f"curate: fractions must map {'/'.join(SPLITS)} to shares >= 0 summing to 1 (got {dict(fractions)})"
        )


@dataclass
class Tally:
    """One step's counts per source: records in (``seen``), out (``kept``), dropped by reason,
    step-specific counts (``counts[name][source]``) and a few examples of what was dropped."""

    seen: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: list[dict] = field(default_factory=list)

    def drop(self, record: dict, reason: str, **example) -> None:
        self.dropped[reason][record["source"]] += 1
        if self.wants_example(reason):
            self.examples.append({"id": record["id"], "source": record["source"], "reason": reason, **example})

    def wants_example(self, reason: str) -> bool:
        """Whether fewer than ``MAX_EXAMPLES`` examples of ``reason`` are kept yet."""
        return sum(e["reason"] == reason for e in self.examples) < MAX_EXAMPLES

    def as_dict(self) -> dict:
        return {
            "in": dict(self.seen),
            "out": dict(self.kept),
            "in_total": sum(self.seen.values()),
            "out_total": sum(self.kept.values()),
            "dropped": {reason: dict(c) for reason, c in self.dropped.items()},
            "counts": {name: dict(c) for name, c in self.counts.items()},
            "examples": self.examples,
        }


def _prompt(record: dict) -> str:
    """The prompt's own text: the non-system messages (the system prompt is ours, one per task)."""
    return "\n\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def _map_text(record: dict, fn) -> dict:
    """A copy of ``record`` with ``fn`` applied to its user messages and its reference."""
    messages = [m if m["role"] == "system" else {**m, "content": fn(m["content"])} for m in record["messages"]]
    return {**record, "messages": messages, "reference": fn(record["reference"])}


# ----------------------------------------------------------------------------- 1. normalize

_INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"  # zero-width, BOM, soft hyphen
_INVISIBLE = dict.fromkeys(map(ord, _INVISIBLE_CHARS))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFKC (full-width letters, ligatures, non-breaking spaces), invisible and control characters out,
    runs of spaces and tabs → one space, line breaks kept (at most one blank line), lines stripped.

    The checks only skip work that would change nothing (ASCII text is NFKC already and has no invisible
    character), and ``" ".join(line.split())`` collapses a line's whitespace runs and strips it in one pass
    (``str.split`` and the regex ``\\s`` agree on what whitespace is): a note costs tens of microseconds.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if any(c in text for c in _INVISIBLE_CHARS):
            text = text.translate(_INVISIBLE)
    text = _CONTROL.sub(" ", text)
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _BLANKS.sub("\n\n", text)
    return text.strip()


def normalize(record: dict) -> dict:
    """A copy of ``record`` with :func:`normalize_text` applied to its user prompt and reference."""
    return _map_text(record, normalize_text)


def normalize_records(records: Iterable[dict], tally: Tally | None = None) -> Iterator[dict]:
    """:func:`normalize` each record; one left with an empty prompt or reference is dropped (``empty``)."""
    tally = tally if tally is not None else Tally()
    for record in records:
        tally.seen[record["source"]] += 1
        record = normalize(record)
        if not record["reference"] or not _prompt(record):
            tally.drop(record, "empty")
            continue
        tally.kept[record["source"]] += 1
        yield record


# ----------------------------------------------------------------------------- 2. scrub

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_YEAR = r"(?:19|20)\d{2}"
# The first character is checked before the alternatives are tried: the scan over a long note stays fast.
_DATE_NUMERIC = re.compile(
    rf"(?<![\w./-])(?=\d)(?:{_YEAR}([/-])(?:0?[1-9]|1[0-2])\1{_DAY}(?![\d/])"  # 2021-03-14, 2021/03/14
    rf"|(?:{_DAY}/{_DAY}/(?:{_YEAR}|\d{{2}})|{_DAY}-{_DAY}-{_YEAR})(?![\d/]|-\d)"  # 03/14/2021, 3/14/21, 14-03-2021
    rf"|{_DAY}\.{_DAY}\.{_YEAR}(?![\d.]\d))"
)  # 14.03.2021
_DATE_NAMED = re.compile(
    rf"\b(?:(?=[jfmasond]){_MONTH}(?:\s+{_DAY}(?:st|nd|rd|th)?,?)?\s+{_YEAR}"  # March 14, 2021; March 2021
    rf"|(?=\d){_DAY}(?:st|nd|rd|th)?(?:\s+of)?[\s-]+{_MONTH}(?:,?\s+|-){_YEAR})\b",  # 14 Mar 2021, 14-Mar-2021
    re.IGNORECASE,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# A labelled identifier: "MRN: 1234567", "Acct # 00123456", "Medical record number A-12345"
_ID_LABELLED = re.compile(
    r"\b(?=[macsrpiu])(?:MRN|MR\s?#|acct|account|accession|SSN|(?:medical\s+)?record"
    r"|(?:patient|pt|member|insurance)\s+ID|unit\s+no|chart)\b\.?\s*(?:number|num|no\.?|#)?\s*[:#=]?\s*"
    r"(?P<id>(?:[A-Z]{1,3}-?)?\d[\d-]{3,}\d)(?![\w-])",
    re.IGNORECASE,
)
# A long digit run (>= 7) a few words after a word that names an identifier: "the medical record number is 12345678"
_ID_NEAR = re.compile(
    r"\b(?=[mraic])(?:MRN|record|account|acct|ID|identifier|chart)\b(?:\W+[A-Za-z]+){0,3}?[^\w\n]+"
    r"(?P<id>\d{7,})(?![\w-])",
    re.IGNORECASE,
)
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_EXT = r"(?:\s*(?:ext|x)\.?\s*\d{1,5}\b)?"
_PHONE_LABELLED = re.compile(
    r"\b(?=[ptfm])(?:phone|tel|telephone|fax|mobile|pager)\b\.?\s*(?:number|no\.?|#)?"
    rf"\s*[:#]?\s*(?P<id>\+?\d[\d ().-]{{5,}}\d{_EXT})(?![\w-])",
    re.IGNORECASE,
)
_PHONE = re.compile(
    "(?=[+(0-9])(?:"
    + "|".join(
        [
            # US: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567, +1 555 123 4567
            rf"(?<![\w+/.-])(?:\+?1[\s.-]?)?(?:\(\d{{3}}\)\s?\d{{3}}[\s.-]\d{{4}}|\d{{3}}([.-])\d{{3}}\1\d{{4}}"
            rf"|\d{{3}} \d{{3}} \d{{4}}){_EXT}(?![\w/]|[.-]\d)",
            # international: +44 20 7946 0958, +33 1 42 68 53 00, +49 (0)30 1234567
            r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(\d{1,4}\))?(?:[\s.-]?\d{1,4}){2,5}(?![\w/]|[.-]\d)",
            # national with a trunk 0: 020 7946 0958, 07700 900123
            r"(?<![\w+/.-])0\d{2,4}[\s-]\d{3,4}[\s-]?\d{3,4}(?![\w/]|[.-]\d)",
        ]
    )
    + ")"
)


def _replace(pattern: re.Pattern, kind: str, text: str, counts: Counter, min_digits: int = 0) -> str:
    """Replace each match (its ``id`` group when it has one: the label stays) by the kind's placeholder."""

    def sub(match: re.Match) -> str:
        grouped = "id" in match.re.groupindex
        target = match.group("id") if grouped else match.group(0)
        if sum(c.isdigit() for c in target) < min_digits:
            return match.group(0)
        counts[kind] += 1
        if not grouped:
            return PLACEHOLDERS[kind]
        start, end = match.start("id") - match.start(), match.end("id") - match.start()
        return match.group(0)[:start] + PLACEHOLDERS[kind] + match.group(0)[end:]

    return pattern.sub(sub, text)


# The scrub patterns in the order they run: emails first, dates before numbers, labelled phone numbers before
# record numbers. (kind, pattern, fewest digits a match needs to be replaced)
_SCRUB_STEPS = [
    ("email", _EMAIL, 0),
    ("date", _DATE_NUMERIC, 0),
    ("date", _DATE_NAMED, 0),
    ("phone", _PHONE_LABELLED, 7),
    ("id", _ID_LABELLED, 5),
    ("id", _ID_NEAR, 0),
    ("id", _SSN, 0),
    ("phone", _PHONE, 9),
]


def _byte_table(default: int | None, classes: Mapping[bytes, int]) -> bytes:
    """A ``bytes.translate`` table: each byte of a ``classes`` key → its value, others → ``default`` (None: kept)."""
    table = bytearray(range(256)) if default is None else bytearray([default] * 256)
    for members, value in classes.items():
        for byte in members:
            table[byte] = value
    return bytes(table)


_ASCII = bytes(range(128))
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.isspace (the regex \s) calls whitespace in ASCII
# digits → 0, whitespace → space, letters lower-cased, non-ASCII bytes → 0x80, the rest kept
_SHAPE = _byte_table(
    None,
    {
        b"0123456789": ord("0"),
        _ASCII_SPACE: ord(" "),
        bytes(range(128, 256)): 0x80,
        **{bytes([c]): c + 32 for c in range(ord("A"), ord("Z") + 1)},
    },
)
_ID_RUNS = _byte_table(ord(" "), {b"0123456789-": ord("0")})  # the characters of a record number → 0, others → space
_PHONE_RUNS = _byte_table(ord(" "), {b"0123456789().+-" + _ASCII_SPACE: ord("0")})  # those of a phone number
# Non-ASCII characters some patterns match: other digits (\d), other whitespace (\s), and the four that match
# ASCII letters when case is ignored (İ ı ſ K); a text with one gets every pattern
_SCRUB_TRAPS = frozenset("\u0130\u0131\u017f\u212a")


def _year_after_space(raw: bytes, shape: bytes) -> bool:
    """Whether a 19xx or 20xx follows a space or a hyphen (as the year of a named date does)."""
    for prefix in (b" 0000", b"-0000"):
        at = shape.find(prefix)
        while at >= 0:
            if raw[at + 1 : at + 3] in (b"19", b"20"):
                return True
            at = shape.find(prefix, at + 1)
    return False


def _scrub_candidates(text: str) -> list[bool]:
    """Per :data:`_SCRUB_STEPS` pattern, whether it may replace anything in ``text``.

    A pattern scan costs about 100 µs on a 3 kB note, and most notes have no
    identifier, so each pattern is first tested against something its matches
    need, with ``in`` on byte "shapes" of the text (one C-level translate
    each): a date of digits needs two separators between digits (``0/00/0``),
    a named date a year after a space, a labelled phone number its label and
    seven characters of a phone number in a row, a record number five digits
    or hyphens in a row, and so on. These are necessary conditions, so the
    output is what running every pattern gives; a replacement never creates a
    match the test ruled out, since it only removes digits and puts a
    bracketed word in their place. A text with a non-ASCII digit, space or
    case trap (:data:`_SCRUB_TRAPS`) gets every pattern.
    """
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) != len(text):
        others = raw.translate(None, _ASCII).decode("utf-8", "surrogatepass")  # the non-ASCII characters
        if any(c.isdecimal() or c.isspace() or c in _SCRUB_TRAPS for c in set(others)):
            return [True] * len(_SCRUB_STEPS)
    shape, id_runs, phone_runs = raw.translate(_SHAPE), raw.translate(_ID_RUNS), raw.translate(_PHONE_RUNS)
    numeric_date = any(digits in shape for digits in (b"0/0/0", b"0/00/0", b"0-0-0", b"0-00-0", b"0.0.0", b"0.00.0"))
    phone_label = b"0" * 7 in phone_runs and any(
        label in shape for label in (b"phone", b"tel", b"fax", b"mobile", b"pager")
    )
    return [
        b"@" in raw,  # email
        numeric_date,  # 2021-03-14, 03/14/2021, 3/14/21, 14.03.2021
        _year_after_space(raw, shape),  # March 14, 2021; 14-Mar-2021
        phone_label,  # labelled phone number
        b"0" * 5 in id_runs,  # labelled record number
        b"0" * 7 in shape,  # record number near its label
        b"000-00-0000" in shape,  # SSN
        b"0" * 9 in phone_runs,
    ]  # phone number (9 digits or more)


def scrub(text: str) -> tuple[str, dict[str, int]]:
    """Identifiers that survive in free text → ``[EMAIL]``, ``[DATE]``, ``[ID]``, ``[PHONE]``; counts per kind.

    Dates need a day and month with a year, or a month with a year (a year
    alone stays); identifiers need a label (MRN, account, record, SSN ...)
    or the SSN shape; phone numbers need a phone shape (US, ``+`` international,
    trunk ``0``) or a label. Lab values (``120/80``, ``7.35/40/80``), doses
    (``500 mg``) and MIMIC's ``___`` spans are left alone. Emails go first,
    dates before numbers, labelled phone numbers before record numbers.
    Patterns that cannot match are skipped (:func:`_scrub_candidates`).
    """
    counts: Counter = Counter()
    for (kind, pattern, min_digits), candidate in zip(_SCRUB_STEPS, _scrub_candidates(text)):
        if candidate:
            text = _replace(pattern, kind, text, counts, min_digits)
    return text, {kind: counts[kind] for kind in SCRUB_KINDS}


def scrub_records(records: Iterable[dict], tally: Tally | None = None) -> Iterator[dict]:
    """:func:`scrub` the user prompt and reference of each record; ``tally.counts[kind][source]`` and
    ``tally.counts["records_changed"][source]`` say how much was replaced. Drops nothing."""
    tally = tally if tally is not None else Tally()
    for record in records:
        source = record["source"]
        tally.seen[source] += 1
        found: Counter = Counter()

        def apply(text: str, found: Counter = found) -> str:
            text, counts = scrub(text)
            found.update(counts)
            return text

        record = _map_text(record, apply)
        for kind in SCRUB_KINDS:
            tally.counts[kind][source] += found[kind]
        tally.counts["records_changed"][source] += any(found.values())
        tally.kept[source] += 1
        yield record


# ----------------------------------------------------------------------------- 3. length

_SLOT = "\x00medllm-slot-{}\x00"  # stands for a message's content while the chat template is rendered once


def _template_parts(tokenizer, roles: tuple[str, ...]) -> list[str] | None:
    """The chat template's text around the contents of a conversation with these roles, or None where the
    template does more than paste each content in.

    Rendered once with placeholder contents padded with whitespace: each must
    come out once, in order and untouched (a template that trims, escapes or
    repeats a content gets None, and each conversation is rendered).
    """
    padded = [f" \t\n{_SLOT.format(i)}\n\t " for i in range(len(roles))]
    try:
        text = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in zip(roles, padded)], tokenize=False)
    except Exception:  # rejected placeholders: each conversation is rendered (and any error raised there)
        return None
    if not isinstance(text, str):
        return None
    parts = []
    for slot in padded:
        before, found, text = text.partition(slot)
        if not found:
            return None
        parts.append(before)
    parts.append(text)
    return None if any("medllm-slot-" in part for part in parts) else parts


def _paste(parts: list[str], contents: list[str]) -> str:
    """``parts`` (:func:`_template_parts`) with the contents in between."""
    pieces = [parts[0]]
    for content, part in zip(contents, parts[1:]):
        pieces += (content, part)
    return "".join(pieces)


def training_texts(records: list[dict], tokenizer) -> list[str]:
    """Each record as the model will be trained on it: prompt and reference through the chat template, or,
    for a tokenizer without one, the contents joined by blank lines.

    The template is rendered once per batch and combination of roles, and each
    conversation's contents are pasted into its text (:func:`_template_parts`);
    the first conversation is also rendered in full and must come out the same,
    else every conversation is rendered.
    """
    conversations = [[*r["messages"], {"role": "assistant", "content": r["reference"]}] for r in records]
    if not getattr(tokenizer, "chat_template", None):
        return ["\n\n".join(m["content"] for m in c) for c in conversations]
    texts: list[str | None] = [None] * len(conversations)
    by_roles: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, conversation in enumerate(conversations):
        by_roles[tuple(m["role"] for m in conversation)].append(i)
    for roles, indices in by_roles.items():
        parts = _template_parts(tokenizer, roles)
        if parts is not None:
            pasted = [_paste(parts, [m["content"] for m in conversations[i]]) for i in indices]
            if pasted[0] == tokenizer.apply_chat_template(conversations[indices[0]], tokenize=False):
                for i, text in zip(indices, pasted):
                    texts[i] = text
                continue
        for i in indices:
            texts[i] = tokenizer.apply_chat_template(conversations[i], tokenize=False)
    return texts


def _rust_tokenizer(tokenizer):
    """The ``tokenizers.Tokenizer`` behind a fast tokenizer when calling it directly gives the ids
    ``tokenizer(texts)`` gives (no truncation, padding or special-token splitting set on it), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    if bool(getattr(backend, "encode_special_tokens", False)) != bool(
        getattr(tokenizer, "split_special_tokens", False)
    ):
        return None
    return backend


def token_lengths(records: list[dict], tokenizer) -> list[int]:
    """Token counts of :func:`training_texts`, tokenized as one batch (a fast tokenizer runs it in Rust,
    without the offsets and Python objects a full encoding carries)."""
    if not records:
        return []
    texts = training_texts(records, tokenizer)
    special = not getattr(tokenizer, "chat_template", None)  # a chat template writes its own special tokens
    backend = _rust_tokenizer(tokenizer)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=special)]
    ids = tokenizer(texts, add_special_tokens=special, return_attention_mask=False, verbose=False)["input_ids"]
    return [len(i) for i in ids]


def length_filter(
    records: Iterable[dict],
    tokenizer,
    min_tokens: int,
    max_tokens: int,
    tally: Tally | None = None,
    batch_size: int = 256,
    lengths: dict[str, int] | None = None,
) -> Iterator[dict]:
    """Keep records of ``min_tokens`` to ``max_tokens`` tokens (:func:`token_lengths`), in batches of
    ``batch_size``; ``too_short`` and ``too_long`` are counted. ``lengths``, when given, is filled with
    id → token count of the records kept (ints: the data card's histogram).

    A batch is tokenized in a second thread while the next one is read (a
    fast tokenizer leaves Python free meanwhile), so on two cores the
    tokenizer mostly runs beside the steps before and after it.
    """
    tally = tally if tally is not None else Tally()
    if not getattr(tokenizer, "is_fast", False):
        log.warning("length filter: %s is not a fast tokenizer; tokenizing will be slow", type(tokenizer).__name__)
    records = iter(records)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medllm-tokenize") as pool:
        pending = None
        while True:
            batch = list(islice(records, batch_size))
            ahead = (batch, pool.submit(token_lengths, batch, tokenizer)) if batch else None
            if pending is not None:
                yield from _length_keep(*pending, min_tokens, max_tokens, tally, lengths)
            if ahead is None:
                break
            pending = ahead


def _length_keep(
    batch: list[dict], counted: Future, min_tokens: int, max_tokens: int, tally: Tally, lengths: dict[str, int] | None
) -> Iterator[dict]:
    for record, n in zip(batch, counted.result()):
        tally.seen[record["source"]] += 1
        if n < min_tokens:
            tally.drop(record, "too_short", tokens=n)
        elif n > max_tokens:
            tally.drop(record, "too_long", tokens=n)
        else:
            tally.kept[record["source"]] += 1
            if lengths is not None:
                lengths[record["id"]] = n
            yield record


# ----------------------------------------------------------------------------- word n-gram hashes

_WORD = re.compile(r"\w+")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: the rolling hash below is a polynomial in it, modulo 2**64
# bytes.translate table splitting UTF-8 text into words: ASCII letters, digits and _ kept (the ASCII \w),
# other ASCII → space, bytes of non-ASCII characters kept (the non-word ones are replaced beforehand)
_WORD_BYTES = bytes(c if chr(c).isalnum() or c == ord("_") or c >= 128 else ord(" ") for c in range(256))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``): what shingles and n-grams are made of, punctuation ignored."""
    return _WORD.findall(text.casefold())


def _word_bytes(text: str) -> list[bytes]:
    """:func:`words` as UTF-8 bytes, twice as fast: the non-ASCII characters that are not word characters
    (``\\w`` is ``str.isalnum`` or ``_``) become spaces, then one translate and ``split`` cut the words."""
    text = text.casefold()
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) != len(text):
        for c in set(raw.translate(None, _ASCII).decode("utf-8", "surrogatepass")):
            if not c.isalnum():
                text = text.replace(c, " ")
        raw = text.encode("utf-8", "surrogatepass")
    return raw.translate(_WORD_BYTES).split()


def _word_hash(word: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little")


_WORD_HASHES: dict[bytes, int] = {}  # UTF-8 word → _word_hash(word); cleared when it reaches the limit below
_WORD_HASHES_MAX = 1 << 18


def _word_hashes(tokens: list[bytes]) -> np.ndarray:
    """``_word_hash`` of each token, from a cache dict (one lookup a word, no Python frame per word)."""
    cache = _WORD_HASHES
    values = list(map(cache.get, tokens))
    if None in values:
        if len(cache) >= _WORD_HASHES_MAX:
            cache.clear()
        for i, value in enumerate(values):
            if value is None:
                values[i] = cache[tokens[i]] = _word_hash(tokens[i])
    return np.array(values, dtype=np.uint64)


def _roll(h: np.ndarray, n: int) -> np.ndarray:
    """The ``n``-gram hashes of word hashes ``h``: a polynomial in ``_MUL`` over each run of ``n``."""
    count = len(h) - n + 1
    if n < 1 or count <= 0:
        return np.empty(0, dtype=np.uint64)
    grams = h[:count].copy()
    for j in range(1, n):
        grams *= _MUL
        grams += h[j : j + count]
    return grams


def ngram_hashes(tokens: list[str], n: int) -> np.ndarray:
    """64-bit hashes of the word ``n``-grams of ``tokens`` (position order; empty when fewer than ``n``).

    Each word is hashed once (blake2b, cached) and the n-grams are rolled in
    numpy, so a discharge note costs a few hundred microseconds, not a hash
    call per n-gram. Stable across runs and processes.
    """
    return _roll(_word_hashes([t.encode("utf-8", "surrogatepass") for t in tokens]), n)


def _text_word_hashes(text: str) -> np.ndarray:
    """``_word_hash`` of each of the :func:`words` of ``text`` (the fast path of dedupe and decontamination)."""
    return _word_hashes(_word_bytes(text))


_DIGITS = b"0123456789"


def line_ngram_hashes(text: str, n: int) -> np.ndarray:
    """Word ``n``-gram hashes of each line of ``text``, leaving out n-grams across lines or with a number.

    Our prompt templates put their own wording on lines of its own ("Patient
    summary:", "Summarise the key findings ..."), so no n-gram mixes template
    words with a source's text: such mixed n-grams recur across a few records
    of one template and read as leaks. N-grams holding a number ("white blood
    cell count 7 1 109 l") recur by chance across unrelated patients; a leaked
    text still shares its many number-free n-grams.
    """
    grams = []
    for line in text.split("\n"):
        tokens = _word_bytes(line)
        if len(tokens) < n:
            continue
        rolled = _roll(_word_hashes(tokens), n)
        digits = np.fromiter((t != t.translate(None, _DIGITS) for t in tokens), dtype=bool, count=len(tokens))
        if digits.any():
            runs = np.concatenate(([0], np.cumsum(digits)))
            rolled = rolled[runs[n:] == runs[:-n]]
        grams.append(rolled)
    return np.concatenate(grams) if grams else np.empty(0, dtype=np.uint64)


def _unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d array (sorted, each value once) by sorting and comparing neighbours: numpy 2's
    hash-based unique takes five times as long on the few hundred n-grams of a note."""
    values = np.sort(values)
    if values.size < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


# ----------------------------------------------------------------------------- 4. dedupe


def _band_key(band: bytes) -> bytes:
    """An LSH band (4 bytes a row) stored as 8 bytes; a rare collision only adds a candidate, which is checked."""
    return hashlib.blake2b(band, digest_size=8).digest()


def exact_key(record: dict) -> bytes:
    """16-byte hash of the prompt and reference, case-folded and whitespace-collapsed."""
    text = " ".join(_prompt(record).casefold().split()) + "\x1f" + " ".join(record["reference"].casefold().split())
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))  # MurmurHash3's finalizer


class _Signer:
    """MinHash signatures of 32-bit shingle hashes, equal to ``datasketch.MinHash(num_perm, hashfunc=int)``'s.

    For datasketch's default ``affine32`` scheme (``fmix32(h) * a + b`` in
    uint32, minimum over the shingles) the signature is one numpy expression
    over all shingles, twice as fast as ``update_batch``, which goes through a
    Python list; it is checked against ``update_batch`` on the first call, and
    ``update_batch`` is used when it differs or for another scheme.
    """

    def __init__(self, num_perm: int):
        from datasketch import MinHash

        self.minhash = MinHash(num_perm=num_perm, hashfunc=int)  # inputs are already hashes
        a, b = self.minhash.permutations
        self.a, self.b = (a, b) if getattr(self.minhash, "scheme", None) == "affine32" else (None, None)
        self.checked = False
        self.dtype = self.minhash.hashvalues.dtype

    def _datasketch(self, shingles: np.ndarray) -> np.ndarray:
        self.minhash.clear()
        self.minhash.update_batch(shingles.tolist())
        return self.minhash.hashvalues

    def __call__(self, shingles: np.ndarray) -> np.ndarray:
        if self.a is None:
            return self._datasketch(shingles)
        h = shingles.astype(np.uint32)
        s1, m1, s2, m2 = _FMIX32
        h ^= h >> s1
        h *= m1
        h ^= h >> s2
        h *= m2
        h ^= h >> s1
        signature = np.multiply.outer(h, self.a)
        signature += self.b
        signature = signature.min(axis=0)
        if not self.checked:
            self.checked = True
            if not np.array_equal(signature, self._datasketch(shingles)):
                log.warning("dedupe: MinHash signatures differ from datasketch's; using MinHash.update_batch")
                self.a = None
                return self._datasketch(shingles)
        return signature


class _Buckets:
    """MinHash LSH buckets, as ``datasketch.MinHashLSH`` keeps them, in less memory.

    The bands (``b`` of ``r`` rows, chosen by ``MinHashLSH`` for the threshold)
    and band keys (:func:`_band_key` of the band's big-endian bytes) are
    datasketch's, and so is the order of the candidates a query returns; a
    bucket holds an int while it has one entry (most do) and a set beyond,
    and nothing is kept to remove entries. About 1 kB a record, a third of
    ``MinHashLSH``'s.
    """

    def __init__(self, threshold: float, num_perm: int):
        from datasketch import MinHashLSH

        self.ranges = MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges
        self.tables: list[dict[bytes, int | set[int]]] = [{} for _ in self.ranges]

    def keys(self, signature: np.ndarray) -> list[bytes]:
        return [_band_key(signature[start:end].byteswap().tobytes()) for start, end in self.ranges]

    def query(self, keys: list[bytes]) -> set[int]:
        candidates: set[int] = set()
        for key, bands in zip(keys, self.tables):
            bucket = bands.get(key)
            if isinstance(bucket, int):
                candidates.add(bucket)
            elif bucket:
                for position in bucket:
                    candidates.add(position)
        return candidates

    def insert(self, position: int, keys: list[bytes]) -> None:
        for key, bands in zip(keys, self.tables):
            bucket = bands.get(key)
            if bucket is None:
                bands[key] = position
            elif isinstance(bucket, int):
                bands[key] = {bucket, position}
            else:
                bucket.add(position)


def dedupe(
    records: Iterable[dict],
    tally: Tally | None = None,
    near_threshold: float | None = 0.8,
    num_perm: int = 128,
    shingle_words: int = 5,
) -> Iterator[dict]:
    """Drop exact duplicates (:func:`exact_key`) and near duplicates, keeping the first of each.

    Near duplicates: MinHash of the word ``shingle_words``-grams of prompt and
    reference, candidates from MinHash LSH at ``near_threshold`` (the bands of
    ``datasketch.MinHashLSH``, :class:`_Buckets`), confirmed on the signatures
    (estimated Jaccard >= threshold, so LSH's false positives are not dropped).
    Records of the same ``group`` are never near duplicates of each other: the
    QA pairs of one discharge note, or the cloze queries of one case report,
    share their context by design (their exact duplicates still go). Note that
    one changed word alters up to ``shingle_words`` shingles, so a text needs
    about 50 words for a one-word edit to stay above 0.8. State: a 16-byte hash
    per record and, per kept record, its signature (4 bytes × ``num_perm``, in
    one growing array), LSH buckets, group and id.
    """
    tally = tally if tally is not None else Tally()
    seen_keys: set[bytes] = set()
    near = near_threshold is not None
    if near:
        buckets = _Buckets(near_threshold, num_perm)
        sign = _Signer(num_perm)
        signatures = np.empty((0, num_perm), dtype=sign.dtype)
        kept_groups: list[str] = []
        kept_ids: list[str] = []
    for record in records:
        source = record["source"]
        tally.seen[source] += 1
        key = exact_key(record)
        if key in seen_keys:
            tally.drop(record, "exact_duplicate")
            continue
        seen_keys.add(key)
        if near:
            h = _text_word_hashes(_prompt(record) + "\n" + record["reference"])
            shingles = _unique(_roll(h, min(shingle_words, len(h))) >> np.uint64(32))
            if shingles.size:
                signature = sign(shingles)
                keys = buckets.keys(signature)
                match = None
                for candidate in buckets.query(keys):
                    if kept_groups[candidate] == record["group"]:
                        continue
                    similarity = float(np.mean(signatures[candidate] == signature))
                    if similarity >= near_threshold:
                        match = (candidate, similarity)
                        break
                if match:
                    tally.drop(record, "near_duplicate", of=kept_ids[match[0]], jaccard=round(match[1], 3))
                    continue
                position = len(kept_ids)
                if position == len(signatures):  # grow by half: amortised O(1), no list of small arrays
                    signatures = np.concatenate(
                        [signatures, np.empty((max(1024, position // 2), num_perm), dtype=signatures.dtype)]
                    )
                signatures[position] = signature
                buckets.insert(position, keys)
                kept_groups.append(record["group"])
                kept_ids.append(record["id"])
        tally.kept[source] += 1
        yield record


# ----------------------------------------------------------------------------- 5. decontaminate


@dataclass
class EvalIndex:
    """The word n-grams of evaluation texts as sorted 64-bit hashes (no text kept).

    ``units[i]``: how many evaluation units (a benchmark item, a test-split
    group) contain ``grams[i]``; ``sets[i]``: the index in ``names`` of the
    first evaluation set that has it. ``stats``: texts, units and texts shorter
    than ``n`` words (they have no n-gram) per set.
    """

    n: int
    grams: np.ndarray
    units: np.ndarray
    sets: np.ndarray
    names: list[str]
    stats: dict[str, dict[str, int]]
    common_ignored: int = 0
    _present: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def lookup(self, grams: np.ndarray) -> np.ndarray:
        """For each of ``grams``, its position in ``self.grams``, or -1 where the index does not hold it.

        A table of which leading bits occur in the index (16 slots a gram, at
        most 2**26: 64 MB) rules out most grams first, so the binary search into
        millions of grams (a large test split) runs for a few a record.
        """
        if not self.grams.size or not grams.size:
            return np.full(grams.shape, -1)
        if self._present is None:
            bits = min(26, max(16, (16 * self.grams.size).bit_length()))
            self._present = np.zeros(1 << bits, dtype=bool)
            self._present[self.grams >> np.uint64(64 - bits)] = True
        shift = np.uint64(64 - (self._present.size.bit_length() - 1))
        maybe = np.flatnonzero(self._present[grams >> shift])
        found = np.full(grams.shape, -1)
        if maybe.size:
            candidates = grams[maybe]
            pos = np.minimum(np.searchsorted(self.grams, candidates), self.grams.size - 1)
            found[maybe] = np.where(self.grams[pos] == candidates, pos, -1)
        return found


def build_eval_index(
    eval_sets: Mapping[str, Iterable[str | list[str]]], n: int = 8, max_groups: int | None = None
) -> EvalIndex:
    """Index the word ``n``-grams of evaluation texts: ``{set name: [text, ...]}``.

    An item may be a list of texts forming one unit (the records of one
    test-split group), counted once by the common-n-gram rule. With
    ``max_groups``, n-grams found in more than that many units are left out
    now: they are template or boilerplate (a prompt template, MIMIC's
    ``Name: ___ Unit No: ___`` header), not a leak.
    """
    names, parts, labels, stats = [], [], [], {}
    for name, items in eval_sets.items():
        label = len(names)
        names.append(name)
        stat = stats[name] = {"texts": 0, "units": 0, "too_short": 0}
        for item in items:
            texts = [item] if isinstance(item, str) else list(item)
            grams = []
            for text in texts:
                stat["texts"] += 1
                g = line_ngram_hashes(text, n)
                stat["too_short"] += not g.size
                grams.append(g)
            unit = _unique(np.concatenate(grams)) if grams else np.empty(0, np.uint64)
            if unit.size:
                stat["units"] += 1
                parts.append(unit)
                labels.append(np.full(unit.size, label, dtype=np.uint16))
    if not parts:
        empty = np.empty(0, dtype=np.uint64)
        return EvalIndex(n, empty, np.empty(0, np.int64), np.empty(0, np.uint16), names, stats)
    grams, first, units = np.unique(np.concatenate(parts), return_index=True, return_counts=True)
    sets = np.concatenate(labels)[first]
    common = 0
    if max_groups is not None:
        keep = units <= max_groups
        common = int((~keep).sum())
        grams, units, sets = grams[keep], units[keep], sets[keep]
    return EvalIndex(n, grams, units, sets, names, stats, common)


def decontaminate(
    records: list[dict], index: EvalIndex, tally: Tally | None = None, max_groups: int = 10
) -> list[dict]:
    """Drop the records sharing a word n-gram (``index.n``, default 8) with an evaluation text.

    Why 8 and not GPT-3's 13: the evaluation texts here are short. 39% of the
    1,089 MMLU medical questions have fewer than 13 words, so they have no
    13-gram at all and a leaked question would pass unseen; an 8-word run
    shared with a question (or a question and its first choice) is still
    rare by chance. What guards against chance matches is the common-n-gram
    rule: an n-gram found in more than ``max_groups`` groups counting both
    sides (evaluation units plus training groups) is template or boilerplate,
    not a leak, and is ignored. N-grams are taken within lines and without
    numbers (:func:`line_ngram_hashes`), so none mixes our template with a
    source's text or matches by a lab value. Two passes over ``records`` (a list): one to
    find hits and count the training groups per hit n-gram, one to drop.
    The dropped count per evaluation set is ``tally.dropped[set name]``.
    """
    tally = tally if tally is not None else Tally()
    hits: dict[int, np.ndarray] = {}
    train_groups: dict[int, set[str]] = defaultdict(set)
    for i, record in enumerate(records):
        grams = _unique(line_ngram_hashes(_prompt(record) + "\n" + record["reference"], index.n))
        positions = index.lookup(grams)  # sorted queries: numpy's binary searches then walk forward
        found = positions[positions >= 0]
        if found.size:
            hits[i] = found
            for gram in found.tolist():
                if len(train_groups[gram]) <= max_groups:
                    train_groups[gram].add(record["group"])
    common = {g for g, groups in train_groups.items() if int(index.units[g]) + len(groups) > max_groups}
    tally.counts["common_ngrams_ignored"]["all"] = index.common_ignored + len(common)
    kept = []
    for i, record in enumerate(records):
        tally.seen[record["source"]] += 1
        leaks = [g for g in hits[i].tolist() if g not in common] if i in hits else []
        if leaks:
            example, reason = {}, index.names[int(index.sets[leaks[0]])]
            if tally.wants_example(reason):
                for line in (_prompt(record) + "\n" + record["reference"]).split("\n"):
                    tokens = words(line)
                    at = np.flatnonzero(np.isin(ngram_hashes(tokens, index.n), index.grams[leaks]))
                    if at.size:  # the first in the text
                        example = {"ngram": " ".join(tokens[int(at[0]) : int(at[0]) + index.n])}
                        break
            tally.drop(record, reason, **example)
            continue
        tally.kept[record["source"]] += 1
        kept.append(record)
    return kept


def benchmark_texts(items: Iterable[dict]) -> list[str]:
    """Evaluation texts of multiple-choice items (:func:`medllm.data.benchmarks.load_benchmark`): the question followed
    by its choices, one text per item, so a short question still has n-grams (question into first choice)."""
    return [" ".join([item["question"], *item["choices"]]) for item in items]


# ----------------------------------------------------------------------------- 6. group split


def split_of(group: str, fractions: Mapping[str, float], seed: str | int = "medllm") -> str:
    """The split of ``group``: sha1 of ``seed:group`` read as a number in [0, 1) against the cumulative
    ``fractions`` (in the order given). Stable across runs, machines and record order; every record of a
    group lands in the same split."""
    u = int.from_bytes(hashlib.sha1(f"{seed}:{group}".encode()).digest()[:8], "big") / 2**64
    total, last = 0.0, None
    for name, fraction in fractions.items():
        if fraction > 0:
            total, last = total + fraction, name
            if u < total:
                return name
    return last  # rounding: u beyond a sum just under 1


def group_split(
    records: Iterable[dict], fractions: Mapping[str, float], seed: str | int = "medllm", tally: Tally | None = None
) -> Iterator[tuple[str, dict]]:
    """(split, record) per record by :func:`split_of` its ``group``; ``tally.counts[split][source]``.

    A record that carries a ``split`` keeps it: the simulated cases of
    :mod:`medllm.data.build` are split by simulation seed, every disease in every split.
    """
    check_fractions(fractions)
    tally = tally if tally is not None else Tally()
    for record in records:
        split = record.get("split") or split_of(record["group"], fractions, seed)
        tally.seen[record["source"]] += 1
        tally.kept[record["source"]] += 1
        tally.counts[split][record["source"]] += 1
        yield split, record


# ----------------------------------------------------------------------------- 7. mixture


def cap_sources(
    pairs: Iterable[tuple[str, dict]],
    caps: Mapping[str, int],
    fractions: Mapping[str, float],
    seed: int = 0,
    tally: Tally | None = None,
) -> dict[str, list[dict]]:
    """Collect (split, record) pairs into split lists, keeping at most ``caps[source]`` records of a source.

    A cap is shared out by ``fractions`` (a source capped at 1,000 keeps up to
    900/50/50 of train/validation/test) and filled by reservoir sampling, so
    the kept records are a uniform, seeded sample of the whole stream held in
    memory bounded by the cap, not the first records of the first file. Kept
    records stay in stream order. Uncapped sources keep everything.
    """
    tally = tally if tally is not None else Tally()
    out: dict[str, list] = {split: [] for split in fractions}
    reservoirs: dict[tuple[str, str], list] = {}
    seen: Counter = Counter()
    rngs: dict[tuple[str, str], random.Random] = {}
    for position, (split, record) in enumerate(pairs):
        source = record["source"]
        tally.seen[source] += 1
        if source not in caps:
            out[split].append((position, record))
            continue
        key = (split, source)
        limit = round(caps[source] * fractions[split])
        bucket = reservoirs.setdefault(key, [])
        k = seen[key]
        seen[key] += 1
        if k < limit:
            bucket.append((position, record))
        else:
            rng = rngs.setdefault(key, random.Random(f"{seed}:cap:{split}:{source}"))
            j = rng.randrange(k + 1)
            if j < limit:
                bucket[j] = (position, record)
    for (split, source), bucket in reservoirs.items():
        out[split].extend(bucket)
        tally.dropped["cap"][source] += seen[(split, source)] - len(bucket)
    splits = {}
    for split, items in out.items():
        items.sort(key=lambda item: item[0])
        splits[split] = [record for _, record in items]
        for record in splits[split]:
            tally.kept[record["source"]] += 1
    return splits


def weight_sources(
    records: list[dict], weights: Mapping[str, float], seed: int = 0, tally: Tally | None = None
) -> list[dict]:
    """Downsample ``records`` so each source's share is its weight over the sum of weights.

    The mix is the largest one the records allow (the source shortest of its
    share sets the total); each source's records are a seeded uniform sample,
    kept in order. Weights never upsample: repeating records is what epochs
    are for. Every source present needs a weight when any has one.
    """
    tally = tally if tally is not None else Tally()
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_source[record["source"]].append(i)
        tally.seen[record["source"]] += 1
    if not weights:
        tally.kept.update(tally.seen)
        return list(records)
    missing = sorted(set(by_source) - set(weights))
    if missing:
        raise MedllmError(
            f"curate: mixture weights given for some sources but not for {', '.join(missing)}: "
            "give every training source a weight, or none"
        )
    total = sum(weights[s] for s in by_source)
    if total <= 0:
        raise MedllmError("curate: the mixture weights of the training sources sum to 0")
    shares = {s: weights[s] / total for s in by_source}
    size = min(len(by_source[s]) / p for s, p in shares.items() if p > 0)
    keep = set()
    for source, indices in by_source.items():
        n = min(len(indices), math.floor(shares[source] * size + 1e-9))
        chosen = random.Random(f"{seed}:weight:{source}").sample(indices, n)
        keep.update(chosen)
        tally.dropped["weight"][source] += len(indices) - n
        tally.kept[source] += n
    return [r for i, r in enumerate(records) if i in keep]


# ----------------------------------------------------------------------------- 8. the recipe


def curate(
    records: Iterable[dict],
    config: CurateConfig | Mapping | None = None,
    tokenizer=None,
    eval_texts: Mapping[str, Iterable[str]] | None = None,
    load_stats: Mapping[str, LoadStats] | None = None,
) -> tuple[dict[str, list[dict]], dict]:
    """Curate ``records`` (e.g. :func:`medllm.data.sources.iter_records` of several sources, chained) into splits.

    normalize → scrub → length (skipped without a ``tokenizer``) → dedupe →
    group split → cap → decontaminate the training split against
    ``eval_texts`` (``{name: [text, ...]}``, e.g. ``{"mmlu_medical":
    benchmark_texts(load_benchmark("mmlu_medical"))}``) and, with
    ``decontaminate_test_split``, the test split itself → weight the training
    split. ``load_stats`` (source → the :class:`LoadStats` the loaders filled)
    puts read/bad/filtered counts in the report; they are read after the
    records are consumed.

    Returns ``({split: [record, ...]}, report)``; the report is JSON-ready:
    ``config``, ``sources`` (load counts), ``steps`` (per step: in/out per
    source and total, dropped by reason per source, counts, examples,
    ``scope`` all or train), ``scrub`` (replacements per kind), ``decontamination``,
    ``splits`` (size per split and source), ``token_lengths`` (per source
    summary and a shared-bin histogram; None without a tokenizer).
    """
    cfg = CurateConfig.from_value(config)
    tallies = {step: Tally() for step in STEPS}
    lengths: dict[str, int] = {}
    stream: Iterable[dict] = records
    if cfg.normalize:
        stream = normalize_records(stream, tallies["normalize"])
    if cfg.scrub:
        stream = scrub_records(stream, tallies["scrub"])
    if tokenizer is not None:
        stream = length_filter(
            stream, tokenizer, cfg.min_tokens, cfg.max_tokens, tallies["length"], cfg.length_batch_size, lengths
        )
    stream = dedupe(stream, tallies["dedupe"], cfg.near_threshold, cfg.num_perm, cfg.shingle_words)
    pairs = group_split(stream, cfg.fractions, cfg.split_seed, tallies["split"])
    caps = {s: m["cap"] for s, m in cfg.mixture.items() if m.get("cap") is not None}
    splits = cap_sources(pairs, caps, cfg.fractions, cfg.seed, tallies["cap"])
    for split in SPLITS:
        splits.setdefault(split, [])

    if eval_texts is not None and not isinstance(eval_texts, Mapping):
        raise MedllmError("curate: eval_texts must map a name to its texts, e.g. {'mmlu_medical': [...]}")
    eval_sets: dict[str, Iterable] = dict(eval_texts or {})
    if TEST_SPLIT_SET in eval_sets:
        raise MedllmError(f"curate: '{TEST_SPLIT_SET}' names the test split's own texts; call your set otherwise")
    if cfg.decontaminate_test_split and splits["test"]:
        units: dict[str, list[str]] = defaultdict(list)
        for record in splits["test"]:  # a preset split (simulated cases) overlaps by design and is checked upstream
            if not record.get("split"):
                units[record["group"]].append(_prompt(record) + "\n" + record["reference"])
        eval_sets[TEST_SPLIT_SET] = list(units.values())
    index = build_eval_index(eval_sets, cfg.decontam_ngram, cfg.decontam_max_groups)
    splits["train"] = decontaminate(splits["train"], index, tallies["decontaminate"], cfg.decontam_max_groups)
    weights = {s: m["weight"] for s, m in cfg.mixture.items() if m.get("weight") is not None}
    splits["train"] = weight_sources(splits["train"], weights, cfg.seed, tallies["weight"])

    steps = {}
    for step, tally in tallies.items():
        if step == "length" and tokenizer is None:
            steps[step] = {"skipped": "no tokenizer given"}
        elif (step == "normalize" and not cfg.normalize) or (step == "scrub" and not cfg.scrub):
            steps[step] = {"skipped": "turned off"}
        else:
            steps[step] = {"scope": "train" if step in TRAIN_ONLY else "all", **tally.as_dict()}
    scrub_counts = tallies["scrub"].counts
    report = {
        "config": asdict(cfg),
        "sources": {name: asdict(stats) for name, stats in (load_stats or {}).items()},
        "steps": steps,
        "scrub": {
            "total": {kind: sum(scrub_counts[kind].values()) for kind in SCRUB_KINDS},
            "by_source": {
                source: {kind: scrub_counts[kind][source] for kind in SCRUB_KINDS} for source in tallies["scrub"].seen
            },
            "records_changed": dict(scrub_counts["records_changed"]),
        },
        "decontamination": {
            "ngram": cfg.decontam_ngram,
            "max_groups": cfg.decontam_max_groups,
            "eval_sets": index.stats,
            "ngrams_indexed": int(index.grams.size),
            "common_ngrams_ignored": tallies["decontaminate"].counts["common_ngrams_ignored"]["all"],
            "dropped": {name: dict(c) for name, c in tallies["decontaminate"].dropped.items()},
            "dropped_total": sum(sum(c.values()) for c in tallies["decontaminate"].dropped.values()),
            "examples": tallies["decontaminate"].examples,
        },
        "splits": {split: dict(Counter(r["source"] for r in rows)) for split, rows in splits.items()},
        "split_sizes": {split: len(rows) for split, rows in splits.items()},
        "token_lengths": _length_summary(splits, lengths) if tokenizer is not None else None,
    }
    return splits, report


def _length_summary(splits: dict[str, list[dict]], lengths: dict[str, int], bins: int = 30) -> dict:
    """Per source: token count summary of the curated records, and a histogram on shared log-spaced bins."""
    per_source: dict[str, list[int]] = defaultdict(list)
    for rows in splits.values():
        for record in rows:
            if record["id"] in lengths:
                per_source[record["source"]].append(lengths[record["id"]])
    if not per_source:
        return {"by_source": {}, "histogram": None}
    everything = np.concatenate([np.asarray(v) for v in per_source.values()])
    low, high = max(1, int(everything.min())), max(2, int(everything.max()) + 1)
    edges = np.unique(np.round(np.geomspace(low, high, bins + 1)).astype(int))
    if edges.size < 2:
        edges = np.array([low, low + 1])
    summary, counts = {}, {}
    for source, values in sorted(per_source.items()):
        a = np.asarray(values)
        summary[source] = {
            "n": int(a.size),
            "min": int(a.min()),
            "median": float(np.median(a)),
            "mean": round(float(a.mean()), 1),
            "p95": float(np.percentile(a, 95)),
            "max": int(a.max()),
        }
        counts[source] = np.histogram(a, bins=edges)[0].tolist()
    return {"by_source": summary, "histogram": {"edges": edges.tolist(), "counts": counts}}


# ----------------------------------------------------------------------------- 9. data card


def plot_token_lengths(report: dict, path: Path) -> str | None:
    """Token-length histogram, one line per source (log x); None when the report has no lengths."""
    histogram = (report.get("token_lengths") or {}).get("histogram")
    if not histogram:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for source, counts in histogram["counts"].items():
        ax.stairs(counts, histogram["edges"], label=f"{source} (n = {sum(counts)})", lw=1.5)
    ax.set(
        xlabel="tokens (prompt + reference, chat template)",
        ylabel="records",
        title="Token length per source (curated records)",
    )
    edges = histogram["edges"]
    if edges[-1] >= 10 * edges[0]:  # log bins read best on a log axis, in plain numbers
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_mixture(report: dict, path: Path) -> str | None:
    """Records per source, stacked by split (horizontal bars); None when nothing was kept."""
    splits = report.get("splits") or {}
    sources = sorted({s for counts in splits.values() for s in counts})
    if not sources:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(sources) + 1.6))
    left = np.zeros(len(sources))
    for split in [s for s in SPLITS if s in splits]:
        values = np.array([splits[split].get(s, 0) for s in sources], dtype=float)
        ax.barh(sources, values, left=left, label=split)
        left += values
    train = sum(splits.get("train", {}).values()) or 1
    for y, source in enumerate(sources):
        share = splits.get("train", {}).get(source, 0) / train
        ax.annotate(f" {share:.0%} of train", (left[y], y), va="center", fontsize=8)
    ax.set(xlabel="records", title="Source mixture by split", xlim=(0, 1.25 * max(left.max(), 1)))
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    return save_figure(fig, path)


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join(table(header, rows)) + "\n"


def _fence(text: str) -> str:
    """A fenced block longer than any backtick run inside ``text``."""
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}text\n{text}\n{ticks}\n"


def _truncate(text: str, limit: int = CARD_TRUNCATE) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _source_info(name: str, extra: Mapping[str, SourceInfo | Mapping] | None) -> dict:
    info = (extra or {}).get(name) or SOURCES.get(name)
    if info is None:
        raise MedllmError(f"data card: no license or access terms for source '{name}': pass them in extra_sources")
    info = asdict(info) if isinstance(info, SourceInfo) else dict(info)
    missing = [k for k in ("license", "access") if not info.get(k)]
    if missing:
        raise MedllmError(f"data card: source '{name}' needs {' and '.join(missing)}")
    return {"task": info.get("task", ""), "license": info["license"], "access": info["access"]}


def write_data_card(
    folder: Path,
    report: dict,
    sources_used: Iterable[str],
    examples: Iterable[dict],
    extra_sources: Mapping[str, SourceInfo | Mapping] | None = None,
) -> dict[str, Path]:
    """Write ``data_card.md``, ``data_card.json`` and the PNG plots into ``folder``, each atomically.

    ``report`` is :func:`curate`'s; ``sources_used`` the source names to
    state license and access terms for (from :data:`medllm.data.sources.SOURCES`,
    or ``extra_sources``: name → :class:`SourceInfo` or ``{license, access,
    task}`` for sources defined elsewhere; a source with neither is an error,
    since a card without its terms would mislead). ``examples``: records,
    the first 3 per source shown (prompt truncated). Returns name → path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(sources_used))
    infos = {name: _source_info(name, extra_sources) for name in names}
    shown: dict[str, list[dict]] = defaultdict(list)
    for record in examples:
        if len(shown[record["source"]]) < CARD_EXAMPLES:
            shown[record["source"]].append(
                {"id": record["id"], "prompt": _truncate(_prompt(record)), "reference": _truncate(record["reference"])}
            )
    plots = {
        "token_lengths": plot_token_lengths(report, folder / "token_lengths.png"),
        "mixture": plot_mixture(report, folder / "mixture.png"),
    }
    plots = {k: v for k, v in plots.items() if v}
    card = {
        "sources": {n: {**infos[n], "load": report.get("sources", {}).get(n)} for n in names},
        "report": report,
        "examples": dict(shown),
        "plots": plots,
    }
    atomic_write_json(folder / "data_card.json", card)
    atomic_write_text(folder / "data_card.md", _card_markdown(card))
    written = {"data_card.md": folder / "data_card.md", "data_card.json": folder / "data_card.json"}
    written.update({name: folder / name for name in plots.values()})
    return written


def _card_markdown(card: dict) -> str:
    report = card["report"]
    steps, sizes = report.get("steps", {}), report.get("split_sizes", {})
    out = [
        "# Data card\n\n",
        f"Curated records: {sum(sizes.values())} (" + ", ".join(f"{split} {n}" for split, n in sizes.items()) + "). "
        "Splits are by group (patient, note, article): no group is in two splits. "
        "Identifiers in free text were replaced by placeholders with pattern-based scrubbing, "
        "which is no substitute for the sources' own de-identification.\n",
        "\n## Sources\n\n",
    ]
    rows = []
    for name, info in card["sources"].items():
        load = info.get("load") or {}
        rows.append(
            [
                name,
                info["task"],
                info["license"],
                info["access"],
                load.get("read", ""),
                load.get("bad", ""),
                load.get("filtered", ""),
                load.get("yielded", ""),
            ]
        )
    out.append(_table(["source", "task", "license", "access", "read", "malformed", "filtered", "records"], rows))

    out.append("\n## Curation steps\n\n")
    rows = []
    for step, block in steps.items():
        if "skipped" in block:
            rows.append([step, "", "", "", f"skipped: {block['skipped']}"])
            continue
        dropped = "; ".join(f"{reason} {sum(c.values())}" for reason, c in block["dropped"].items()) or "none"
        rows.append([step, block["scope"], block["in_total"], block["out_total"], dropped])
    out.append(_table(["step", "applies to", "in", "out", "dropped"], rows))
    sources = sorted({s for b in steps.values() if "in" in b for s in b["in"]})
    if sources:
        out.append("\nRecords out of each step, per source:\n\n")
        ran = [s for s, b in steps.items() if "out" in b]
        header = [f"{s} (train)" if steps[s]["scope"] == "train" else s for s in ran]
        out.append(_table(["source", *header], [[src, *(steps[s]["out"].get(src, 0) for s in ran)] for src in sources]))

    scrub = report.get("scrub") or {}
    if scrub.get("by_source"):
        out.append("\n## Scrubbed identifiers\n\n")
        kinds = list(scrub["total"])
        rows = [
            [src, *(counts.get(k, 0) for k in kinds), scrub["records_changed"].get(src, 0)]
            for src, counts in scrub["by_source"].items()
        ]
        rows.append(["total", *(scrub["total"][k] for k in kinds), sum(scrub["records_changed"].values())])
        out.append(_table(["source", *kinds, "records changed"], rows))

    near = [e for e in steps.get("dedupe", {}).get("examples", []) if e["reason"] == "near_duplicate"]
    if near:
        out.append(
            "\nNear-duplicate examples (dropped → kept): "
            + "; ".join(f"`{e['id']}` → `{e['of']}` (Jaccard {e['jaccard']})" for e in near)
            + "\n"
        )

    decon = report.get("decontamination") or {}
    if decon:
        out.append(
            f"\n## Decontamination\n\nTraining records sharing a word {decon['ngram']}-gram (within a line, no number) "
            f"with an evaluation text were dropped: {decon['dropped_total']} in all. N-grams found in more than "
            f"{decon['max_groups']} groups (evaluation and training together) count as template text "
            f"and were ignored ({decon['common_ngrams_ignored']}).\n\n"
        )
        rows = [
            [name, s["texts"], s["units"], s["too_short"], sum(decon["dropped"].get(name, {}).values())]
            for name, s in decon["eval_sets"].items()
        ]
        out.append(
            _table(
                [
                    "evaluation set",
                    "texts",
                    "units",
                    f"shorter than {decon['ngram']} words",
                    "training records dropped",
                ],
                rows,
            )
        )
        if decon["examples"]:
            out.append(
                "\nExamples: "
                + "; ".join(f'`{e["id"]}` ({e["reason"]}: "{e.get("ngram", "")}")' for e in decon["examples"])
                + "\n"
            )

    out.append("\n## Splits\n\n")
    splits = report.get("splits") or {}
    split_names = [s for s in SPLITS if s in splits]
    srcs = sorted({s for counts in splits.values() for s in counts})
    out.append(
        _table(
            ["source", *split_names],
            [[src, *(splits[sp].get(src, 0) for sp in split_names)] for src in srcs]
            + [["total", *(sizes.get(sp, 0) for sp in split_names)]],
        )
    )
    mixture = (report.get("config") or {}).get("mixture") or {}
    if mixture:
        out.append("\nMixture settings: " + "; ".join(f"{s}: {m}" for s, m in mixture.items()) + "\n")

    lengths = (report.get("token_lengths") or {}).get("by_source") or {}
    if lengths:
        out.append("\n## Token lengths\n\n")
        keys = ["n", "min", "median", "mean", "p95", "max"]
        out.append(_table(["source", *keys], [[s, *(v[k] for k in keys)] for s, v in lengths.items()]))
    for name, file in card["plots"].items():
        out.append(f"\n![{name}]({file})\n")

    if card["examples"]:
        out.append("\n## Examples\n\n")
        for source, rows in card["examples"].items():
            out.append(f"\n### {source}\n")
            for example in rows:
                out.append(
                    f"\n`{example['id']}`\n\nPrompt:\n\n{_fence(example['prompt'])}\n"
                    f"Reference:\n\n{_fence(example['reference'])}"
                )
    return "".join(out)
