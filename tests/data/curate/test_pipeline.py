"""The recipe: the steps chained with their counts, the training split decontaminated, the config checked."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from data.curate.records import record, text, user
from medllm.config import CurationConfig, MixtureSpec
from medllm.data.curate.pipeline import curate
from medllm.data.curate.split import split_of

SPLIT3 = {"train": 0.6, "validation": 0.2, "test": 0.2}


def test_curate_chains_the_steps_with_counts(curated):
    splits, report = curated
    steps = report["steps"]
    assert list(steps) == ["normalize", "scrub", "length", "dedupe", "split", "cap", "decontaminate", "weight"]
    assert steps["normalize"]["in"] == {"ehrdsqa": 40, "pmc_patients": 33}
    for before, after in [
        ("normalize", "scrub"),
        ("scrub", "length"),
        ("length", "dedupe"),
        ("dedupe", "split"),
        ("split", "cap"),
        ("decontaminate", "weight"),
    ]:
        assert steps[before]["out"] == steps[after]["in"], (before, after)
    assert steps["length"]["dropped"] == {"too_long": {"pmc_patients": 1}}
    assert steps["dedupe"]["dropped"] == {"exact_duplicate": {"pmc_patients": 1}}
    # the cap of 30 is shared out 18/6/6 and filled from what each split has; pmc_patients is uncapped
    assert 20 <= steps["cap"]["out"]["ehrdsqa"] <= 30 and steps["cap"]["out"]["pmc_patients"] == 31
    assert steps["cap"]["dropped"]["cap"]["ehrdsqa"] == 40 - steps["cap"]["out"]["ehrdsqa"]
    assert sum(r["source"] == "ehrdsqa" for r in splits["test"]) <= 6
    assert steps["decontaminate"]["scope"] == "train" and steps["weight"]["out_total"] == len(splits["train"])
    # every note has a date; so does the cross-source copy, scrubbed before it is found a duplicate
    assert report["scrub"]["total"]["date"] == 41
    assert report["scrub"]["records_changed"] == {"ehrdsqa": 40, "pmc_patients": 1}
    assert all("[DATE]" in user(r) for rows in splits.values() for r in rows if r["source"] == "ehrdsqa")
    assert report["sources"]["ehrdsqa"]["bad"] == 2
    assert report["split_sizes"] == {s: len(v) for s, v in splits.items()}
    assert (
        sum(report["split_sizes"].values())
        == steps["cap"]["out_total"] - steps["decontaminate"]["in_total"] + steps["decontaminate"]["out_total"]
    )
    groups = {s: {r["group"] for r in rows} for s, rows in splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    lengths = report["token_lengths"]
    assert lengths["by_source"]["ehrdsqa"]["n"] == steps["cap"]["out"]["ehrdsqa"]
    assert lengths["by_source"]["pmc_patients"]["max"] <= 2000
    assert sum(lengths["histogram"]["counts"]["pmc_patients"]) == sum(
        report["splits"][s].get("pmc_patients", 0) for s in splits
    )
    json.dumps(report)  # JSON-ready


def test_curate_decontaminates_train_against_eval_sets_and_the_test_split(curated):
    splits, report = curated
    decon = report["decontamination"]
    assert "pmc_patients:leak" not in {r["id"] for r in splits["train"]}
    assert decon["dropped"] == {"mmlu_medical": {"pmc_patients": 1}} and decon["dropped_total"] == 1
    assert decon["examples"][0]["id"] == "pmc_patients:leak"
    assert decon["eval_sets"]["mmlu_medical"] == {"texts": 1, "units": 1, "too_short": 0}
    test_groups = {r["group"] for r in splits["test"]}
    assert decon["eval_sets"]["test_split"]["units"] == len(test_groups) > 0


def test_curate_drops_training_text_overlapping_the_test_split(tokenizer):
    shared = text(8000, 12)  # a paragraph quoted in two articles (different groups, not near duplicates)
    records = [
        record("pmc_patients", str(i), f"pmid{i}", f"Patient summary: {text(9000 + i, 60)} {shared}") for i in range(2)
    ]
    groups = {}
    for k in range(200):
        groups.setdefault(split_of(f"g{k}", SPLIT3, "medllm"), f"g{k}")
    records[0]["group"], records[1]["group"] = groups["test"], groups["train"]
    splits, report = curate(records, CurationConfig(min_tokens=1, fractions=SPLIT3), tokenizer)
    assert [r["id"] for r in splits["test"]] == ["pmc_patients:0"] and splits["train"] == []
    assert report["decontamination"]["dropped"] == {"test_split": {"pmc_patients": 1}}
    kept, _ = curate(records, CurationConfig(min_tokens=1, fractions=SPLIT3, decontaminate_test_split=False), tokenizer)
    assert [r["id"] for r in kept["train"]] == ["pmc_patients:1"]


def test_curation_config_rejects_unknown_settings_and_non_numbers():
    with pytest.raises(ValidationError, match="min_token\n  Extra inputs are not permitted"):
        CurationConfig(min_token=3)
    for bad in (True, "3"):
        with pytest.raises(ValidationError, match="weight"):
            MixtureSpec(weight=bad)
        with pytest.raises(ValidationError, match="cap"):
            MixtureSpec(cap=bad)
