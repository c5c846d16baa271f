"""Group split: groups kept together, fractions respected and checked, stable across runs."""

from __future__ import annotations

from collections import Counter

import pytest

from data.curate.records import record
from medllm.data.curate.split import group_split, split_of
from medllm.data.curate.tally import Tally
from medllm.errors import MedllmError

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_group_split_keeps_groups_together_and_respects_fractions():
    records = [record("ehrdsqa", f"{g}:{i}", f"patient{g}", "q") for g in range(1000) for i in range(3)]
    tally = Tally()
    pairs = list(group_split(records, FRACTIONS, "seed", tally))
    splits_of_group: dict[str, set] = {}
    for split, r in pairs:
        splits_of_group.setdefault(r["group"], set()).add(split)
    assert all(len(s) == 1 for s in splits_of_group.values())
    per_split = Counter(next(iter(s)) for s in splits_of_group.values())
    assert abs(per_split["train"] - 800) < 50 and abs(per_split["validation"] - 100) < 30
    assert abs(per_split["test"] - 100) < 30
    assert sum(tally.counts["test"].values()) == 3 * per_split["test"]
    # stable: same split whatever the order and run; another seed moves groups
    again = {r["group"]: split for split, r in group_split(reversed(records), FRACTIONS, "seed")}
    assert all(again[g] == next(iter(s)) for g, s in splits_of_group.items())
    assert split_of("patient7", FRACTIONS, "seed") == split_of("patient7", dict(FRACTIONS), "seed")
    other = sum(split_of(f"patient{g}", FRACTIONS, "other") != again[f"patient{g}"] for g in range(1000))
    assert other > 100


def test_fractions_are_checked():
    with pytest.raises(MedllmError, match="fractions"):
        list(group_split([], {"train": 0.8, "test": 0.1}))
