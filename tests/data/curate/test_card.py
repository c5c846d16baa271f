"""The data card: its files, the counts and terms it states, and the plots."""

from __future__ import annotations

import json

import pytest

from medllm.data.curate.card import write_data_card
from medllm.data.sources import SOURCES, SourceInfo
from medllm.errors import MedllmError


def test_data_card_files_counts_and_plots(curated, tmp_path):
    splits, report = curated
    extra = {"local_notes": SourceInfo("qa", "internal use only", "hospital IRB approval", "notes.json")}
    written = write_data_card(
        tmp_path / "card",
        report,
        ["ehrdsqa", "pmc_patients", "local_notes"],
        splits["train"] + splits["test"],
        extra_sources=extra,
    )
    assert set(written) == {"data_card.md", "data_card.json", "token_lengths.png", "mixture.png"}
    for name in ("token_lengths.png", "mixture.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads(written["data_card.json"].read_text())
    assert card["sources"]["ehrdsqa"]["license"] == SOURCES["ehrdsqa"].license
    assert card["sources"]["local_notes"]["access"] == "hospital IRB approval"
    assert card["report"]["steps"]["dedupe"]["dropped"] == {"exact_duplicate": {"pmc_patients": 1}}
    assert all(len(v) <= 3 for v in card["examples"].values()) and card["examples"]["pmc_patients"]
    md = written["data_card.md"].read_text()
    for expected in (
        SOURCES["pmc_patients"].license,
        "internal use only",
        "| dedupe |",
        "exact_duplicate 1",
        "## Scrubbed identifiers",
        "## Decontamination",
        "## Splits",
        "![mixture](mixture.png)",
        "### ehrdsqa",
    ):
        assert expected in md, expected
    assert not list((tmp_path / "card").glob(".*"))  # no temporary file left
    with pytest.raises(MedllmError, match="unknown_source"):
        write_data_card(tmp_path / "other", report, ["unknown_source"], [])
