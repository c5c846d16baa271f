"""What every seed-dataset loader shares: file readers, field checks and the skip-and-count loop.

Every reader streams its file record by record (``ijson`` for JSON arrays, the
``csv`` module, text shards line by line): the largest files do not fit in
memory and need not. A record that does not fit the format raises :class:`Bad`
in its parser; :func:`load_records` skips it with a warning naming its file and
line (or JSON index) and counts it in :class:`~medllm.data.sources.LoadStats`;
too many of them, a missing file or a file of another format raise
:class:`~medllm.errors.MedllmError`.
"""

from __future__ import annotations

import csv
import glob
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import ijson

from medllm.data.sources import SOURCES, LoadStats, make_record
from medllm.errors import MedllmError

log = logging.getLogger(__name__)

MAX_BAD_FRACTION = 0.05
EARLY_CHECK = 100  # records read before the bad share is checked while loading (always checked at the end)
MAX_BAD_LOCATIONS = 10  # bad records logged and listed one by one; the rest are only counted


class Bad(Exception):
    """A source record that does not fit the format: skipped, logged and counted."""


def ident_or_none(value) -> str | None:
    """An id as text (JSON ints and CSV strings agree: 17 and "17"); None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Bad(f"expected an id, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def ident(obj: dict, *keys: str) -> str:
    """The first non-empty id among ``keys``."""
    for key in keys:
        value = ident_or_none(obj.get(key))
        if value is not None:
            return value
    raise Bad(f"missing field '{keys[0]}'" if len(keys) == 1 else f"missing fields {' and '.join(keys)}")


def required_text(obj: dict, key: str, prefix: str = "") -> str:
    """Field ``key`` as stripped non-empty text (``prefix`` locates a nested field in the message)."""
    value = obj.get(key)
    if value is None:
        raise Bad(f"missing field '{prefix}{key}'")
    if not isinstance(value, str) or not value.strip():
        raise Bad(f"field '{prefix}{key}' must be non-empty text (got {value!r:.60})")
    return value.strip()


def source_record(source: str, key: str, group: str, prompt: str, reference: str, meta: dict) -> dict:
    """A record of seed dataset ``source`` (its :data:`~medllm.data.sources.SOURCES` entry)."""
    return make_record(source, SOURCES[source], key, group, prompt, reference, meta)


def source_file(source: str, path: Path) -> Path:
    """``path`` if it is a file, else an error naming the files ``source`` expects."""
    path = Path(path)
    if not path.is_file():
        raise MedllmError(f"{source}: file not found: {path} (expected {SOURCES[source].files})")
    return path


def _natural(path: Path) -> list:
    """Sort key putting ``part_2`` before ``part_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def shards(source: str, path: Path, pattern: str) -> list[Path]:
    """The files of a source given as one file, a folder (``pattern`` inside it) or a glob."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
    elif Path(path).is_dir():
        files = [p for p in Path(path).glob(pattern) if p.is_file()]
    else:
        files = [Path(path)] if Path(path).is_file() else []
    if not files:
        raise MedllmError(f"{source}: no file at {path} (expected {SOURCES[source].files})")
    return sorted(files, key=_natural)


def json_array(source: str, path: Path, prefix: str = "item") -> Iterator[tuple[str, object]]:
    """(``file [index]``, object) per element of the array at ijson ``prefix`` (CliCR: ``data.item``), parsed
    incrementally."""
    opener, kind = (b"[", "a JSON array") if prefix == "item" else (b"{", "a JSON object")
    parent = prefix.removesuffix("item").rstrip(".")
    with open(path, "rb") as fh:
        if fh.read(1024).lstrip()[:1] != opener:
            raise MedllmError(f"{path}: not {kind}; expected {SOURCES[source].files}")
        fh.seek(0)
        index = -1
        try:
            for index, obj in enumerate(ijson.items(fh, prefix, use_float=True)):
                yield f"{path} [{parent}[{index}]]" if parent else f"{path} [{index}]", obj
        except ijson.JSONError as exc:
            raise MedllmError(f"{path}: invalid JSON after element {index} ({exc})") from None


def csv_rows(source: str, path: Path, required: list[str], exact: bool = False) -> Iterator[tuple[str, object]]:
    """(``file:line``, row dict) per CSV row; a row with the wrong number of cells comes as a ``Bad``."""
    csv.field_size_limit(2**31 - 1)  # discharge notes and reports exceed the 128 kB default
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing or (exact and header != required):
            raise MedllmError(
                f"{path}: unexpected CSV header (missing {', '.join(missing) or 'nothing'}; "
                f"got {', '.join(header[:8]) or 'nothing'}); expected {SOURCES[source].files}"
            )
        line = reader.line_num + 1
        try:
            for values in reader:
                where, line = f"{path}:{line}", reader.line_num + 1
                if not values:
                    continue
                if len(values) != len(header):
                    yield where, Bad(f"expected {len(header)} cells, got {len(values)}")
                else:
                    yield where, dict(zip(header, values))
        except csv.Error as exc:
            raise MedllmError(f"{path}:{line}: unreadable CSV ({exc})") from None


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based number, line without its line ending) per line of a UTF-8 text file."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            yield number, line.rstrip("\r\n")


Parse = Callable[[object], tuple[list[dict], int]]


def load_records(
    source: str,
    path: Path,
    units: Iterable[tuple[str, object]],
    parse: Parse,
    stats: LoadStats | None,
    max_bad_fraction: float,
    expected: str | None = None,
) -> Iterator[dict]:
    """Parse each source record into output records, skipping and counting malformed ones.

    ``parse(raw)`` returns (records, number dropped on purpose) or
    raises ``Bad``. The bad share is checked after each record once
    ``EARLY_CHECK`` were read (a wrong file fails early), and at the end
    whatever the count. Errors quote ``expected`` (default: the source's files in :data:`SOURCES`).
    """
    expected = expected or SOURCES[source].files
    if not 0 <= max_bad_fraction <= 1:
        raise MedllmError(f"max_bad_fraction must be between 0 and 1 (got {max_bad_fraction})")
    stats = stats if stats is not None else LoadStats()
    read = bad = 0
    first_bad = ""

    def check() -> None:
        if bad > max_bad_fraction * read:
            raise MedllmError(
                f"{path}: {bad} of {read} {source} records ({bad / read:.0%}) are malformed, more "
                f"than the {max_bad_fraction:.0%} allowed (first: {first_bad}); "
                f"expected {expected}"
            )

    try:
        for where, raw in units:
            read += 1
            stats.read += 1
            try:
                if isinstance(raw, Bad):
                    raise raw
                records, filtered = parse(raw)
            except Bad as exc:
                bad += 1
                stats.bad += 1
                first_bad = first_bad or f"{where}: {exc}"
                if len(stats.bad_locations) < MAX_BAD_LOCATIONS:
                    stats.bad_locations.append(where)
                if bad <= MAX_BAD_LOCATIONS:
                    log.warning("%s: skipped a malformed %s record: %s", where, source, exc)
                elif bad == MAX_BAD_LOCATIONS + 1:
                    log.warning("%s: further malformed %s records are counted, not logged", path, source)
            else:
                stats.filtered += filtered
                stats.yielded += len(records)
                yield from records
            if read >= EARLY_CHECK:
                check()
    except UnicodeDecodeError as exc:
        raise MedllmError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected {expected}") from None
    if read == 0:
        raise MedllmError(f"{path}: no {source} records found; expected {expected}")
    check()
