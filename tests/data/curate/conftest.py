"""The tokenizer and the curated corpus that the curation tests share."""

from __future__ import annotations

import pytest

from data.curate.records import QUESTION, record, text, user
from medllm.config import CurationConfig
from medllm.data.curate.pipeline import curate
from medllm.data.curate.split import split_of
from medllm.data.sources import LoadStats

SPLIT3 = {"train": 0.6, "validation": 0.2, "test": 0.2}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def corpus() -> tuple[list[dict], dict[str, LoadStats]]:
    """Two sources: distinct cases, a date in each note, a cross-source copy, an MMLU leak, one too long."""
    leak_group = next(f"pmid-leak{k}" for k in range(100) if split_of(f"pmid-leak{k}", SPLIT3, "medllm") == "train")
    records = []
    for i in range(40):
        prompt = f"Discharge note: {text(1000 + i, 40)} seen 03/14/2021. Question: {text(2000 + i, 8)}"
        records.append(record("ehrdsqa", f"{i}:0", f"p{i // 2}", prompt, text(3000 + i, 6)))
    for i in range(30):
        records.append(
            record(
                "pmc_patients",
                str(i),
                f"pmid{i}",
                f"Patient summary: {text(4000 + i, 50)}",
                f"A case of {text(5000 + i, 4)}",
            )
        )
    records.append(record("pmc_patients", "copy", "pmid-copy", user(records[0]), records[0]["reference"]))
    records.append(
        record("pmc_patients", "leak", leak_group, f"Patient summary: {text(6000, 20)} {QUESTION}", "A case")
    )
    records.append(record("pmc_patients", "long", "pmid-long", f"Patient summary: {text(7000, 3000)}", "A case"))
    stats = {
        "ehrdsqa": LoadStats(read=20, yielded=40, bad=2, bad_locations=["f.json [3]", "f.json [9]"]),
        "pmc_patients": LoadStats(read=33, yielded=33),
    }
    return records, stats


@pytest.fixture(scope="module")
def curated(tokenizer):
    records, stats = corpus()
    config = CurationConfig(min_tokens=8, max_tokens=2000, fractions=SPLIT3, mixture={"ehrdsqa": {"cap": 30}})
    return curate(iter(records), config, tokenizer, {"mmlu_medical": [QUESTION]}, stats)
