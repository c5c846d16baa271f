"""Concurrent generation requests grouped into one padded batch.

A CPU or GPU runs a batch of B greedy generations in little more time than one
(the weights are read once a step for all B), so requests that wait together
are answered together: the first request opens a batch, which takes whatever
else arrives within ``wait_s`` up to ``max_batch`` requests, and one worker
thread runs it. Each request still gets exactly its own greedy answer (left
padding, the attention mask hides the pads); a request asking for fewer new
tokens than its batch-mates gets the first tokens of the longer run, which
greedy decoding makes the same answer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass


@dataclass
class _Request:
    messages: list[dict]
    max_new_tokens: int
    future: Future


class GenerationBatcher:
    """Runs ``generate_batch(message lists, per-request token limits)`` on groups of waiting requests."""

    def __init__(
        self,
        generate_batch: Callable[[list[list[dict]], list[int]], list[tuple[str, int]]],
        max_batch: int,
        wait_s: float,
    ):
        self._generate_batch, self.max_batch, self.wait_s = generate_batch, max_batch, wait_s
        self._queue: queue.Queue[_Request] = queue.Queue()
        self.batch_sizes: list[int] = []  # of every batch run, for benchmarks and tests
        threading.Thread(target=self._run, daemon=True, name="medllm-batcher").start()

    def submit(self, messages: list[dict], max_new_tokens: int) -> tuple[str, int]:
        """The answer text and its token count; blocks until this request's batch has run."""
        request = _Request(messages, max_new_tokens, Future())
        self._queue.put(request)
        return request.future.result()

    def _gather(self) -> list[_Request]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            self.batch_sizes.append(len(batch))
            try:
                answers = self._generate_batch([r.messages for r in batch], [r.max_new_tokens for r in batch])
            except Exception as exc:  # every waiting request gets the failure; the worker lives on
                for request in batch:
                    request.future.set_exception(exc)
                continue
            for request, answer in zip(batch, answers):
                request.future.set_result(answer)
