"""HealthQA (patient.info) consumer health questions with their positive answer paragraph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medllm.data.loaders.reading import (
    MAX_BAD_FRACTION,
    Bad,
    Parse,
    load_records,
    numbered_lines,
    source_file,
    source_record,
)
from medllm.data.sources import LoadStats


def _healthqa_units(path: Path) -> Iterator[tuple[str, object]]:
    for number, line in numbered_lines(path):
        if line.strip():
            yield f"{path}:{number}", (path, number, line)


def _healthqa_parser() -> Parse:
    """Rows → one record per question: its positive row starts it, its negatives follow (``filtered``)."""
    current = None

    def parse(raw) -> tuple[list[dict], int]:
        nonlocal current
        path, number, line = raw
        cells = line.split("\t", 2)
        if len(cells) != 3 or cells[0].strip() not in ("0", "1"):
            raise Bad("expected 'label<TAB>question<TAB>answer' with label 0 or 1")
        label, question, answer = cells[0].strip(), cells[1].strip(), cells[2].strip().removesuffix(",").strip()
        if not question or not answer:
            raise Bad("empty question or answer")
        if label == "0":
            if question != current:
                raise Bad("a negative answer before its question's positive row")
            return [], 1
        if question == current:
            raise Bad("a second positive answer for the same question")
        current = question
        group = " ".join(question.lower().split())
        return [source_record("healthqa", f"{path.stem}:{number}", group, question, answer, {})], 0

    return parse


def iter_healthqa(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """HealthQA (patient.info) questions with their positive paragraph as reference.

    The answer's trailing ``,`` is removed; the 9 negative paragraphs are
    dropped. Grouped by the question text (lower-cased).
    """
    path = source_file("healthqa", path)
    return load_records("healthqa", path, _healthqa_units(path), _healthqa_parser(), stats, max_bad_fraction)
