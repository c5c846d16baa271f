"""Clinical-note loaders: EHR-DS-QA discharge-note questions and PMC-Patients case summaries."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

from medllm.data.loaders.reading import (
    MAX_BAD_FRACTION,
    Bad,
    csv_rows,
    ident,
    ident_or_none,
    json_array,
    load_records,
    required_text,
    source_file,
    source_record,
)
from medllm.data.sources import LoadStats


def _literal(value, key: str):
    """A list/dict field: as is from JSON; from CSV a JSON or Python literal (single quotes, True/False)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise Bad(f"field '{key}' is neither JSON nor a Python literal ({value!r:.60})") from None


def _bool(value, key: str) -> bool | None:
    """A JSON bool, or its CSV spelling ("True", "false", "1"); None when absent."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "none", "nan"):
        return None
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    raise Bad(f"field '{key}' must be true or false (got {value!r})")


# ----------------------------------------------------------------------------- EHR-DS-QA


def _ehrdsqa_group(note: dict, key: str) -> str:
    """The patient: ``subject_id``, else the subject prefix of a MIMIC note id (``10000001-DS-1``), else the note."""
    subject = ident_or_none(note.get("subject_id"))
    if subject:
        return subject
    note_id = ident_or_none(note.get("note_id"))
    match = re.fullmatch(r"(\d+)-[A-Z]+-\d+", note_id or "")
    return match.group(1) if match else note_id or key


def _ehrdsqa_parse(note) -> tuple[list[dict], int]:
    """One record per QA pair; the prompt is the whole note (``___`` spans kept) and the question.

    A note with one malformed pair is skipped whole: its pairs were generated
    together, so a broken pair signals a broken row. Pairs marked ``correct:
    false`` by the physician are dropped (``filtered``).
    """
    if not isinstance(note, dict):
        raise Bad("expected a note object")
    key = ident(note, "original_id", "note_id")  # original_id is unique; one note_id can cover several records
    text = required_text(note, "note")
    pairs = _literal(note.get("qa_pairs"), "qa_pairs")
    if not isinstance(pairs, list):
        raise Bad("field 'qa_pairs' must be a list of {question, answer}")
    group = _ehrdsqa_group(note, key)
    note_verified = _bool(note.get("human_verified"), "human_verified")
    records, filtered = [], 0
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise Bad(f"qa_pairs[{i}] is not an object")
        question = required_text(pair, "question", f"qa_pairs[{i}].")
        answer = required_text(pair, "answer", f"qa_pairs[{i}].")
        correct = _bool(pair.get("correct"), f"qa_pairs[{i}].correct")
        if correct is False:
            filtered += 1
            continue
        records.append(
            source_record(
                "ehrdsqa",
                f"{key}:{i}",
                group,
                f"Discharge note:\n{text}\n\nQuestion: {question}",
                answer,
                {"verified": note_verified if correct is None else correct},
            )
        )
    return records, filtered


def iter_ehrdsqa(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """EHR-DS-QA discharge-note QA (``.csv`` by suffix, else a JSON array such as the verified file).

    Ids are ``ehrdsqa:<original_id>:<pair index in the note's qa_pairs>``, so a
    pair has the same id in the full and the verified file. ``meta.verified``:
    the pair's ``correct`` flag, else the note's ``human_verified``, else None.
    """
    path = source_file("ehrdsqa", path)
    units = (
        csv_rows("ehrdsqa", path, ["note", "qa_pairs"])
        if path.suffix.lower() == ".csv"
        else json_array("ehrdsqa", path)
    )
    return load_records("ehrdsqa", path, units, _ehrdsqa_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- PMC-Patients


def _pmc_parse(patient) -> tuple[list[dict], int]:
    if not isinstance(patient, dict):
        raise Bad("expected a patient object")
    age = _literal(patient.get("age"), "age") or []
    if not isinstance(age, (list, tuple)) or not all(
        isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[0], (int, float)) for a in age
    ):
        raise Bad(f"field 'age' must be a list of [value, unit] (got {age!r:.60})")
    similar = _literal(patient.get("similar_patients"), "similar_patients") or {}
    if not isinstance(similar, (dict, list)):
        raise Bad("field 'similar_patients' must be a dict of patient_uid → 1|2")
    meta = {
        "age": [[float(v), str(u)] for v, u in age],
        "gender": ident_or_none(patient.get("gender")),
        "similar_patients": [str(uid) for uid in similar],
    }
    summary = required_text(patient, "patient")
    prompt = f"Patient summary:\n{summary}\n\nSummarise the key findings and the most likely diagnosis."
    return [
        source_record(
            "pmc_patients",
            ident(patient, "patient_uid"),
            ident(patient, "PMID"),
            prompt,
            required_text(patient, "title"),
            meta,
        )
    ], 0


def iter_pmc_patients(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """PMC-Patients summaries (``.csv`` by suffix, else a JSON array).

    The reference is the case report's *title*: the dataset has no diagnosis
    field, and the title usually names the condition ("... presenting as ...").
    It is a weak target for "key findings and diagnosis", not a written answer.
    Grouped by article ``PMID`` so all patients of one report stay together.
    """
    path = source_file("pmc_patients", path)
    units = (
        csv_rows("pmc_patients", path, ["patient_uid", "PMID", "title", "patient"])
        if path.suffix.lower() == ".csv"
        else json_array("pmc_patients", path)
    )
    return load_records("pmc_patients", path, units, _pmc_parse, stats, max_bad_fraction)
