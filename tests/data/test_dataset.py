import json

import pytest

from medllm.data.dataset import load_split
from medllm.errors import MedllmError


def test_jsonl_row_missing_a_field_names_file_and_line(tmp_path, tiny_dataset):
    rows = list(load_split(tiny_dataset.data_dir, "train").select(range(3)))
    del rows[1]["completion"]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MedllmError, match=rf"{path}:2: missing field 'completion'"):
        load_split(tmp_path, "train")


def test_saved_dataset_row_missing_a_field_names_the_row(tmp_path, tiny_dataset):
    from datasets import DatasetDict

    train = load_split(tiny_dataset.data_dir, "train")
    broken = train.map(lambda row, i: {"vignette": "" if i == 4 else row["vignette"]}, with_indices=True)
    DatasetDict({"train": broken}).save_to_disk(str(tmp_path / "dataset"))
    with pytest.raises(MedllmError, match=r"train row 4: missing field 'vignette'"):
        load_split(tmp_path, "train")
