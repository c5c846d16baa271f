"""Concurrent requests generated in one padded batch: grouped, each answered with its own greedy answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from medllm.serve.batching import GenerationBatcher


def test_waiting_requests_run_as_one_batch_and_each_gets_its_own_answer():
    seen: list[list[int]] = []

    def generate_batch(batch, limits):
        seen.append(limits)
        return [(m[0]["content"].upper(), limit) for m, limit in zip(batch, limits)]

    batcher = GenerationBatcher(generate_batch, max_batch=4, wait_s=0.5)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: batcher.submit([{"content": f"q{i}"}], i + 1), range(4)))
    assert answers == [("Q0", 1), ("Q1", 2), ("Q2", 3), ("Q3", 4)]
    assert batcher.batch_sizes == [4] and sorted(seen[0]) == [1, 2, 3, 4]


def test_a_batch_never_exceeds_max_batch_and_a_failure_reaches_every_request_of_its_batch():
    calls = threading.Event()

    def generate_batch(batch, limits):
        calls.set()
        if any(m[0]["content"] == "boom" for m in batch):
            raise RuntimeError("engine failed")
        return [("ok", 1)] * len(batch)

    batcher = GenerationBatcher(generate_batch, max_batch=2, wait_s=0.2)
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda i: batcher.submit([{"content": "x"}], 1), range(5)))
    assert max(batcher.batch_sizes) <= 2 and sum(batcher.batch_sizes) == 5
    with pytest.raises(RuntimeError, match="engine failed"):
        batcher.submit([{"content": "boom"}], 1)
    assert batcher.submit([{"content": "x"}], 1) == ("ok", 1), "the worker lives on after a failure"


def test_batched_answers_equal_one_at_a_time_answers(tiny_llama_dir):
    """Left padding and the attention mask make a request's greedy answer independent of its batch-mates."""
    from medllm.config import ModelConfig
    from medllm.models import load_model, load_tokenizer
    from medllm.serve.backends import Engine

    model_cfg = ModelConfig(name=str(tiny_llama_dir), dtype="float32")
    model, tokenizer = load_model(model_cfg), load_tokenizer(model_cfg)
    single = Engine(model, tokenizer, "tiny", None, max_new_tokens=12, timeout_s=60, max_batch=1)
    batched = Engine(model, tokenizer, "tiny", None, max_new_tokens=12, timeout_s=60, max_batch=3, batch_wait_s=0.5)
    prompts = [[{"role": "user", "content": text}] for text in ("Fever?", "A long cough for three weeks, why?", "Rash")]
    limits = [12, 5, 9]
    expected = [single.complete(p, n) for p, n in zip(prompts, limits)]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(batched.complete, prompts, limits))
    assert got == expected and batched.batcher.batch_sizes == [3]
    assert all(n <= limit for (_, n), limit in zip(got, limits))
