"""Normalize: Unicode and whitespace made uniform; a record left empty is dropped."""

from __future__ import annotations

from data.curate.records import record, user
from medllm.data.curate.normalize import normalize, normalize_records
from medllm.data.curate.tally import Tally


def test_normalize_nfkc_whitespace_and_lines():
    raw = "  ﬁbrosis\u00a0at\tthe   base\u200b,\r\nＦＥＶ１ ８０%  \n\n\n\nnext line  "
    r = record("healthqa", "1", "g", raw, " a\t b ")
    out = normalize(r)
    assert user(out) == "fibrosis at the base,\nFEV1 80%\n\nnext line"
    assert out["reference"] == "a b"
    assert out["messages"][0] == r["messages"][0] and user(r).startswith("  ﬁ")  # system kept, input not mutated


def test_normalize_records_drops_what_becomes_empty():
    tally = Tally()
    kept = list(
        normalize_records([record("healthqa", "1", "g", "q", "\u200b "), record("healthqa", "2", "g", "q")], tally)
    )
    assert [r["id"] for r in kept] == ["healthqa:2"]
    assert tally.dropped["empty"] == {"healthqa": 1} and tally.seen["healthqa"] == 2
