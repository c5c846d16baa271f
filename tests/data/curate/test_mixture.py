"""Mixture: caps sample each source uniformly in split proportions, weights set training shares."""

from __future__ import annotations

from collections import Counter

import pytest

from data.curate.records import record
from medllm.data.curate.mixture import cap_sources, weight_sources
from medllm.data.curate.split import group_split
from medllm.data.curate.tally import Tally
from medllm.errors import MedllmError


def test_caps_sample_uniformly_in_split_proportions_and_reproducibly():
    records = [record("bioread", str(i), f"b{i}", "q") for i in range(500)] + [
        record("clicr", str(i), f"c{i}", "q") for i in range(30)
    ]
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}

    def run(seed):
        tally = Tally()
        return cap_sources(group_split(records, fractions, "s"), {"bioread": 100}, fractions, seed, tally), tally

    splits, tally = run(0)
    bioread = {k: [r for r in v if r["source"] == "bioread"] for k, v in splits.items()}
    assert [len(bioread[s]) for s in ("train", "validation", "test")] == [80, 10, 10]
    assert sum(r["source"] == "clicr" for v in splits.values() for r in v) == 30  # uncapped
    assert sum(tally.dropped["cap"].values()) == 400 and tally.kept["bioread"] == 100
    assert max(int(r["id"].split(":")[1]) for r in bioread["train"]) > 300  # not the first 100 read
    ids = [r["id"] for r in splits["train"]]
    assert ids == sorted(ids, key=lambda i: (i.split(":")[0] != "bioread", int(i.split(":")[1])))  # stream order
    assert ids == [r["id"] for r in run(0)[0]["train"]] != [r["id"] for r in run(1)[0]["train"]]


def test_weights_set_shares_and_need_every_source():
    records = [record("bioread", str(i), str(i), "q") for i in range(300)] + [
        record("clicr", str(i), str(i), "q") for i in range(50)
    ]
    tally = Tally()
    out = weight_sources(records, {"bioread": 3, "clicr": 1}, seed=0, tally=tally)
    counts = Counter(r["source"] for r in out)
    assert counts == {"bioread": 150, "clicr": 50}  # clicr, shortest of its share, sets the size
    assert tally.dropped["weight"] == {"bioread": 150, "clicr": 0}
    assert [r["id"] for r in out] == [r["id"] for r in weight_sources(records, {"bioread": 3, "clicr": 1}, seed=0)]
    assert weight_sources(records, {}) == records
    with pytest.raises(MedllmError, match="clicr"):
        weight_sources(records, {"bioread": 1})
