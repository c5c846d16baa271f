"""Step 2, scrub: identifiers that survive in free text (an email, a phone number, a record number, a date)
replaced by placeholders.

Scrubbing is pattern-based; it is no substitute for the sources' own
de-identification, and MIMIC's ``___`` spans are left as they are.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from medllm.data.curate.tally import Keep, Tally, counted
from medllm.data.curate.text import ASCII, map_text

SCRUB_KINDS = ("email", "phone", "id", "date")
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "id": "[ID]", "date": "[DATE]"}

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

    A pattern scan over a long note is costly and most notes have no
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
        others = raw.translate(None, ASCII).decode("utf-8", "surrogatepass")  # the non-ASCII characters
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


def _scrubbed(record: dict) -> Keep:
    """:func:`scrub` on the record's texts; its counts are the replacements per kind and whether any was made."""
    found: Counter = Counter()

    def apply(text: str) -> str:
        text, counts = scrub(text)
        found.update(counts)
        return text

    record = map_text(record, apply)
    return Keep(record, {**{kind: found[kind] for kind in SCRUB_KINDS}, "records_changed": any(found.values())})


def scrub_records(records: Iterable[dict], tally: Tally | None = None) -> Iterator[dict]:
    """:func:`scrub` the user prompt and reference of each record; ``tally.counts[kind][source]`` and
    ``tally.counts["records_changed"][source]`` say how much was replaced. Drops nothing."""
    return counted(((record, _scrubbed(record)) for record in records), tally)
