"""The read side of a built dataset: splits, the disease vocabulary and the retrieval index.

Training, evaluation and serving read what ``medllm data`` wrote through this
module alone, so none of them imports the builder (:mod:`medllm.data.build`).
"""

from __future__ import annotations

import json
from pathlib import Path

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.io import read_jsonl
from medllm.knowledge import Disease
from medllm.retrieval import CaseIndex, DiseaseIndex

DIFFERENTIAL = "differential"  # the task of the simulated cases, the one `medllm eval` scores
CASE_FIELDS = ("disease_id", "disease", "vignette", "candidates", "retrieved")
REQUIRED_FIELDS = ("id", "source", "prompt", "completion")


def load_index(config: Config) -> tuple[DiseaseIndex, CaseIndex | None]:
    """The saved disease index (searched by ``retrieval.method``) and case index, if any."""
    folder = config.data_dir / "index"
    return (
        DiseaseIndex.load(folder, load_diseases(config.data_dir), config.retrieval.method),
        CaseIndex.load(folder / "cases"),
    )


def load_diseases(data_dir: Path) -> list[Disease]:
    path = Path(data_dir) / "diseases.jsonl"
    if not path.is_file():
        raise MedllmError(f"no disease vocabulary at {path}: run `medllm data` first")
    return [Disease.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _check_row(row: dict, where: str) -> None:
    needed = REQUIRED_FIELDS + (CASE_FIELDS if row.get("task", DIFFERENTIAL) == DIFFERENTIAL else ())
    missing = [f for f in needed if f not in row or row[f] in (None, "", [])]
    if missing:
        raise MedllmError(f"{where}: missing field '{missing[0]}'")


def diagnosis_cases(dataset):
    """The simulated differential-diagnosis cases of a split (rows without a ``task`` are such cases)."""
    if "task" not in dataset.column_names:
        return dataset
    return dataset.filter(lambda task: task == DIFFERENTIAL, input_columns="task")


def load_split(data_dir: Path, split: str):
    """One split as a ``datasets.Dataset``: from ``dataset/`` or ``<split>.jsonl``.

    Every row is checked for the fields training and evaluation need; a bad
    row is reported with its file and row (line) number.
    """
    from datasets import Dataset, load_from_disk

    data_dir = Path(data_dir)
    jsonl = data_dir / f"{split}.jsonl"
    if jsonl.is_file():
        rows = []
        for line_no, row in read_jsonl(jsonl):
            _check_row(row, f"{jsonl}:{line_no}")
            rows.append(row)
        if not rows:
            raise MedllmError(f"{jsonl}: no rows")
        return Dataset.from_list(rows)
    saved = data_dir / "dataset"
    if not saved.is_dir():
        raise MedllmError(f"no dataset at {data_dir} (neither dataset/ nor {split}.jsonl): run `medllm data`")
    dataset = load_from_disk(str(saved))
    if split not in dataset:
        raise MedllmError(f"{saved}: no split '{split}' (has {', '.join(dataset)})")
    dataset = dataset[split]
    for i, row in enumerate(dataset):
        _check_row(row, f"{saved}/{split} row {i}")
    return dataset
