import json
import random

import pytest

from medllm.config import load_config
from medllm.data import build_splits, load_index, load_split, simulate_case
from medllm.errors import MedllmError
from medllm.knowledge import load_common_diseases
from medllm.prompts import parse_differential


def test_simulated_case_is_seeded_and_noisy():
    cfg = load_config(None).data.model_copy(update={"extra_findings": (2, 2), "ancestor_prob": 0.0,
                                                    "lay_synonym_prob": 0.0})
    diseases = load_common_diseases()
    asthma = next(d for d in diseases if d.name == "Asthma")
    first = simulate_case(asthma, diseases, cfg, random.Random(5))
    again = simulate_case(asthma, diseases, cfg, random.Random(5))
    assert first == again
    own = {f.name for f in asthma.findings}
    mentioned = first["vignette"].split(" presents with ")[1].rstrip(".").replace(" and ", ", ").split(", ")
    assert sum(m not in own for m in mentioned) == 2, "two findings the disease does not have"
    assert set(first["true_findings"]) <= own


def test_splits_are_leak_free_and_targets_are_ranked(tiny_dataset):
    cfg = tiny_dataset.data.model_copy(update={"cases_per_disease": {"train": 2, "validation": 1, "test": 1}})
    index, _ = load_index(tiny_dataset)
    diseases = index.diseases
    splits = build_splits(diseases, cfg, index)
    train_vignettes = {r["vignette"] for r in splits["train"]}
    assert not train_vignettes & {r["vignette"] for r in splits["test"]}
    for row in splits["train"]:
        ranked = parse_differential(row["completion"][0]["content"])
        assert ranked[0] == row["disease"], "the true disease comes first"
        assert row["disease"] in row["candidates"], "training candidates include the answer"
        assert len(ranked) == min(cfg.differential_size, len(row["candidates"]))
    by_id = {d.id: d.name for d in diseases}
    for row in splits["test"]:
        assert sorted(row["candidates"]) == sorted(by_id[i] for i in row["retrieved"]), \
            "test candidates are retrieval's alone"
    assert any(row["candidates"] != [by_id[i] for i in row["retrieved"]] for row in splits["test"]), "shuffled"


def test_build_dataset_writes_splits_and_preview(tiny_dataset):
    data_dir = tiny_dataset.data_dir
    train = load_split(data_dir, "train")
    assert len(train) == 157 and set(train["source"]) == {"common"}
    assert (data_dir / "preview.jsonl").read_text().count("\n") == 20
    assert json.loads((data_dir / "stats.json").read_text())["counts"]["test"]["total"] == 157


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
