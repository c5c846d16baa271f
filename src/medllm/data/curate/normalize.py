"""Step 1, normalize: Unicode and whitespace made uniform, so later steps compare like with like."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

from medllm.data.curate.tally import Drop, Keep, Tally, counted
from medllm.data.curate.text import map_text, prompt_text

_INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad"  # zero-width, BOM, soft hyphen
_INVISIBLE = dict.fromkeys(map(ord, _INVISIBLE_CHARS))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFKC (full-width letters, ligatures, non-breaking spaces), invisible and control characters out,
    runs of spaces and tabs → one space, line breaks kept (at most one blank line), lines stripped.

    The checks only skip work that would change nothing (ASCII text is NFKC already and has no invisible
    character), and ``" ".join(line.split())`` collapses a line's whitespace runs and strips it in one pass
    (``str.split`` and the regex ``\\s`` agree on what whitespace is).
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
    return map_text(record, normalize_text)


def _normalized(record: dict) -> Keep | Drop:
    record = normalize(record)
    return Keep(record) if record["reference"] and prompt_text(record) else Drop("empty")


def normalize_records(records: Iterable[dict], tally: Tally | None = None) -> Iterator[dict]:
    """:func:`normalize` each record; one left with an empty prompt or reference is dropped (``empty``)."""
    return counted(((record, _normalized(record)) for record in records), tally)
