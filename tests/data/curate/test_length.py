"""Length: token counts through the chat template, short and long records dropped."""

from __future__ import annotations

from data.curate.records import record, text, user
from medllm.data.curate.length import length_filter, token_lengths
from medllm.data.curate.tally import Tally


def test_length_filter_counts_short_and_long_with_the_chat_template(tokenizer):
    records = [record("healthqa", str(i), str(i), text(i, n)) for i, n in enumerate([2, 20, 40, 400])]
    n = token_lengths(records, tokenizer)
    plain = [len(tokenizer(user(r))["input_ids"]) for r in records]
    assert all(a > b for a, b in zip(n, plain))  # system prompt, reference and template tokens counted
    tally, lengths = Tally(), {}
    kept = list(length_filter(records, tokenizer, n[0] + 1, n[2], tally, batch_size=3, lengths=lengths))
    assert [r["id"] for r in kept] == ["healthqa:1", "healthqa:2"]
    assert tally.dropped["too_short"] == {"healthqa": 1} and tally.dropped["too_long"] == {"healthqa": 1}
    assert lengths == {"healthqa:1": n[1], "healthqa:2": n[2]}
