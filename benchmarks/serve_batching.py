"""Throughput of the in-process backend under concurrent clients: batched generation vs one request at a time.

The same model (the recipe's, base weights) behind two engines: ``max_batch 1``
(one generation at a time, the server before batching) and ``--max-batch``
(:class:`medllm.serve.batching.GenerationBatcher`). For each number of clients,
``--requests`` prompts (the red-flag safety set's presentations in the
differential prompt) are sent from that many threads to each engine in turn,
greedy with ``--max-new-tokens``; the two alternate round by round, so load on
this shared machine hits both alike. Reported: requests/s, generated tokens/s,
the median batch size, and batched over one-at-a-time per client count
(median over ``--rounds``).

    nice -n 5 .venv/bin/python benchmarks/serve_batching.py [--clients 1 4 16] [--requests 16] [--rounds 2]

Writes ``runs/bench/serve_batching.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from medllm.config import DEFAULT_RECIPE, load_config
from medllm.io import atomic_write_json
from medllm.markdown import table
from medllm.models import load_model, load_tokenizer
from medllm.prompts import build_messages
from medllm.safety import load_safety_set
from medllm.serve.backends import Engine


def run(engine: Engine, prompts: list[list[dict]], clients: int, max_new_tokens: int) -> dict:
    first = len(engine.batcher.batch_sizes)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda m: engine.complete(m, max_new_tokens), prompts))
    wall = time.perf_counter() - started
    sizes = engine.batcher.batch_sizes[first:]
    return {
        "requests_per_s": len(prompts) / wall,
        "tokens_per_s": sum(n for _, n in answers) / wall,
        "median_batch": statistics.median(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_batching.json"))
    args = parser.parse_args()

    config = load_config(args.config)
    model, tokenizer = load_model(config.model), load_tokenizer(config.model)
    texts = [item["vignette"] for item in load_safety_set()]
    prompts = [build_messages(texts[i % len(texts)], None) for i in range(args.requests)]
    engines = {
        "one at a time": Engine(model, tokenizer, "base", None, args.max_new_tokens, 600, max_batch=1),
        "batched": Engine(model, tokenizer, "base", None, args.max_new_tokens, 600, args.max_batch, 0.01),
    }
    engines["batched"].complete(prompts[0], 4)  # warm-up
    results: dict[int, dict[str, list[dict]]] = {c: {name: [] for name in engines} for c in args.clients}
    for _ in range(args.rounds):
        for clients in args.clients:
            for name, engine in engines.items():
                results[clients][name].append(run(engine, prompts, clients, args.max_new_tokens))
    rows, report = (
        [],
        {
            "protocol": vars(args)
            | {"out": str(args.out), "model": config.model.name, "torch_threads": torch.get_num_threads()},
            "clients": {},
        },
    )
    for clients, by_engine in results.items():
        median = {n: statistics.median(r["requests_per_s"] for r in runs) for n, runs in by_engine.items()}
        ratios = [
            b["requests_per_s"] / o["requests_per_s"] for b, o in zip(by_engine["batched"], by_engine["one at a time"])
        ]
        report["clients"][clients] = {"runs": by_engine, "ratio_median": statistics.median(ratios)}
        tokens = {n: statistics.median(r["tokens_per_s"] for r in runs) for n, runs in by_engine.items()}
        batch = statistics.median(r["median_batch"] for r in by_engine["batched"])
        rows.append(
            [
                clients,
                f"{median['one at a time']:.2f}",
                f"{median['batched']:.2f}",
                f"{tokens['one at a time']:.0f}",
                f"{tokens['batched']:.0f}",
                f"{batch:g}",
                f"{statistics.median(ratios):.2f}x",
            ]
        )
    header = [
        "clients",
        "req/s one at a time",
        "req/s batched",
        "tok/s one",
        "tok/s batched",
        "median batch",
        "batched / one (median)",
    ]
    print("\n".join(table(header, rows)))
    atomic_write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
