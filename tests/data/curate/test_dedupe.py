"""Dedupe: exact and near duplicates across sources, never within a group."""

from __future__ import annotations

from data.curate.records import record, text
from medllm.data.curate.dedupe import dedupe
from medllm.data.curate.tally import Tally


def test_dedupe_exact_and_near_across_sources():
    base = text(1)
    changed = base.split()
    changed[30] = "changedword"
    records = [
        record("ehrdsqa", "a", "p1", base),
        record("pmc_patients", "b", "x1", "  " + base.upper()),  # exact after case/space folding
        record("pmc_patients", "c", "x2", " ".join(changed)),  # one word changed: near duplicate
        record("pmc_patients", "d", "x3", text(2)),  # a different text
        record("ehrdsqa", "e", "p1", " ".join(changed), "another answer"),
    ]  # same group: kept
    tally = Tally()
    kept = [r["id"] for r in dedupe(records, tally, near_threshold=0.8)]
    assert kept == ["ehrdsqa:a", "pmc_patients:d", "ehrdsqa:e"]
    assert tally.dropped["exact_duplicate"] == {"pmc_patients": 1}
    assert tally.dropped["near_duplicate"] == {"pmc_patients": 1}
    near = next(e for e in tally.examples if e["reason"] == "near_duplicate")
    assert near["id"] == "pmc_patients:c" and near["of"] == "ehrdsqa:a" and near["jaccard"] >= 0.8
    # exact only: the near duplicate stays
    assert [r["id"] for r in dedupe(records, near_threshold=None)] == [
        "ehrdsqa:a",
        "pmc_patients:c",
        "pmc_patients:d",
        "ehrdsqa:e",
    ]
