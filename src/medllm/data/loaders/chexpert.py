"""Chest radiograph loaders: CheXpert labels → a findings statement, CheXpert Plus findings → the impression."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from medllm.data.loaders.reading import (
    MAX_BAD_FRACTION,
    Bad,
    Parse,
    csv_rows,
    load_records,
    required_text,
    source_file,
    source_record,
)
from medllm.data.sources import LoadStats

CHEXPERT_LABELS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]
CHEXPERT_VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}


def _age(value) -> int | float | None:
    """An age in years from a CSV cell ("68", "68.0"); None when blank."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        age = float(text)
    except ValueError:
        raise Bad(f"age must be a number (got {text!r})") from None
    return int(age) if age.is_integer() else age


def _patient_folder(path: str) -> str:
    """CheXpert's ``patientNNNNN`` folder: the unit of leakage-free splitting."""
    match = re.search(r"(?:^|/)(patient\d+)/", path)
    if not match:
        raise Bad(f"no patientNNNNN folder in path {path!r}")
    return match.group(1)


def _label_name(label: str) -> str:
    return "other pleural abnormality" if label == "Pleural Other" else label.lower()


def chexpert_sentence(labels: dict[str, str]) -> str:
    """Labels → one findings statement: positives, then uncertain ("possible (uncertain) …"), then negatives.

    ``No Finding`` positive reads "No finding." (other mentioned labels, such
    as support devices, follow); otherwise ``No Finding`` is not stated.
    """
    others = [(n, s) for n, s in labels.items() if n != "No Finding"]
    parts = (
        [_label_name(n) for n, s in others if s == "positive"]
        + [f"possible (uncertain) {_label_name(n)}" for n, s in others if s == "uncertain"]
        + [f"no {_label_name(n)}" for n, s in others if s == "negative"]
    )
    if labels.get("No Finding") == "positive":
        return "No finding." + (f" Also: {'; '.join(parts)}." if parts else "")
    return f"Findings: {'; '.join(parts)}."


def _patient_line(sex: str, age) -> str:
    """ "Patient: female, 68 years." from what is known (CheXpert writes "Unknown" for a missing sex)."""
    known = [sex.strip().lower()] if sex.strip() and sex.strip().lower() != "unknown" else []
    known += [f"{age} years"] if age is not None else []
    return f"Patient: {', '.join(known)}.\n" if known else ""


def _study_key(path: str) -> str:
    """``…/patientNNNNN/studyN``: one report, shared by the study's frontal and lateral images."""
    return path.rsplit("/", 1)[0]


def _chexpert_parser() -> Parse:
    """One record per study; its further views (same labels) and rows with no label to state are ``filtered``."""
    seen: set[str] = set()

    def parse(row) -> tuple[list[dict], int]:
        path = required_text(row, "Path")
        group, study = _patient_folder(path), _study_key(path)
        labels = {}
        for label in CHEXPERT_LABELS:
            cell = row[label].strip()
            if not cell:
                continue
            try:
                labels[label] = CHEXPERT_VALUES[float(cell)]
            except (ValueError, KeyError):
                raise Bad(f"label '{label}' must be 1.0, 0.0, -1.0 or blank (got {cell!r})") from None
        age = _age(row["Age"])
        stated = {n: s for n, s in labels.items() if n != "No Finding" or s == "positive"}
        if study in seen or not stated:
            return [], 1
        seen.add(study)
        listed = "".join(f"- {n}: {s}\n" for n, s in labels.items())
        prompt = (
            f"Chest radiograph study.\n{_patient_line(row['Sex'], age)}"
            f"CheXpert labels from the report:\n{listed}"
            "Write the findings as one statement; state uncertain labels as uncertain."
        )
        return [source_record("chexpert", study, group, prompt, chexpert_sentence(labels), {"labels": labels})], 0

    return parse


def iter_chexpert(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CheXpert ``train.csv`` / ``valid.csv``: a study's labels → a findings statement.

    Blank labels are not mentioned and left out; the reference is built by
    :func:`chexpert_sentence`. A text model cannot read the image: this teaches
    the wording of findings from labels. Grouped by the ``patientNNNNN`` folder.
    """
    path = source_file("chexpert", path)
    return load_records(
        "chexpert",
        path,
        csv_rows("chexpert", path, CHEXPERT_COLUMNS, exact=True),
        _chexpert_parser(),
        stats,
        max_bad_fraction,
    )


def _chexpert_plus_parser() -> Parse:
    """One record per study with both a findings and an impression section; others are ``filtered``."""
    seen: set[str] = set()

    def parse(row) -> tuple[list[dict], int]:
        path = required_text(row, "path_to_image")
        group, study = _patient_folder(path), _study_key(path)
        findings, impression = row["section_findings"].strip(), row["section_impression"].strip()
        if study in seen or not findings or not impression:
            return [], 1
        seen.add(study)
        prompt = (
            f"Chest radiograph report.\n{_patient_line(row.get('sex', ''), _age(row.get('age')))}"
            f"Findings: {findings}\n\nWrite the impression."
        )
        meta = {"split": row["split"].strip()} if row.get("split", "").strip() else {}
        return [source_record("chexpert_plus", study, group, prompt, impression, meta)], 0

    return parse


def iter_chexpert_plus(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CheXpert Plus reports: the findings section → the impression (``meta.split``: the official split).

    Grouped by the ``patientNNNNN`` folder, the same group as in CheXpert.
    """
    path = source_file("chexpert_plus", path)
    units = csv_rows("chexpert_plus", path, ["path_to_image", "section_findings", "section_impression"])
    return load_records("chexpert_plus", path, units, _chexpert_plus_parser(), stats, max_bad_fraction)
