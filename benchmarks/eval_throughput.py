"""Evaluation throughput (items/s), batched against one item at a time, in one run.

Two paths of ``medllm eval`` on the embedded SmolLM2-135M (float32):

- the multiple-choice scorer (:func:`medllm.eval.mcq.evaluate_mcq`, lm-eval
  log-likelihood, 0-shot) on a seeded subset of the MMLU medical questions,
  at batch sizes 1, 8 and 32; the log-likelihoods of every batch size are
  compared with batch 1 (they must agree);
- diagnosis generation (:func:`medllm.generation.generate_answers`, greedy, the
  chat template) on held-out prompts of an existing dataset, batched against
  batch 1; skipped with a message when the dataset folder is missing.

Each setting runs ``--repeats`` times after a one-batch warm-up; the medians
are reported, with ratios to batch 1. On a CPU the forward pass is compute
bound, so batching mostly saves per-call overhead; on a GPU it is the main lever.

    python benchmarks/eval_throughput.py [--questions 200] [--prompts 32] [--data runs/demo/data]

Prints a table and writes ``runs/bench/eval_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from medllm.config import load_config
from medllm.data.benchmarks import load_benchmark
from medllm.data.dataset import load_split
from medllm.eval.mcq import evaluate_mcq
from medllm.generation import generate_answers
from medllm.io import atomic_write_json
from medllm.models import load_model, load_tokenizer
from medllm.prompts import RATIONALE


def timed(fn, warm_up, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls of ``fn`` after one ``warm_up`` call, and the last result."""
    warm_up()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--generation-batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/eval_throughput.json"))
    args = parser.parse_args()

    config = load_config(None, {"model.dtype": "float32"})
    model, tokenizer = load_model(config.model), load_tokenizer(config.model)
    items = random.Random(0).sample(load_benchmark("mmlu_medical"), args.questions)

    mcq, reference = {}, None
    for batch_size in args.batch_sizes:
        score = partial(evaluate_mcq, model, tokenizer, batch_size=batch_size)
        seconds, result = timed(partial(score, items), partial(score, items[:batch_size]), args.repeats)
        lls = np.array([ll for p in result["predictions"] for ll in p["loglikelihoods"]])
        reference = lls if reference is None else reference
        mcq[batch_size] = {
            "seconds": round(seconds, 2),
            "items_per_s": round(len(items) / seconds, 2),
            "acc": result["acc"]["micro"]["value"],
            "max_abs_ll_diff_vs_first": float(np.abs(lls - reference).max()),
        }
        print(f"mcq batch {batch_size}: {mcq[batch_size]}", flush=True)
    first = args.batch_sizes[0]
    for row in mcq.values():
        row["speedup_vs_first"] = round(mcq[first]["seconds"] / row["seconds"], 2)

    generation = None
    if (args.data / "test.jsonl").is_file() or (args.data / "dataset").is_dir():
        prompts = list(load_split(args.data, "test").shuffle(seed=0).select(range(args.prompts))["prompt"])
        generation = {}
        for batch_size in (1, args.generation_batch):
            run = partial(
                generate_answers,
                model,
                tokenizer,
                batch_size=batch_size,
                max_new_tokens=args.max_new_tokens,
                stop_strings=[RATIONALE],
            )
            seconds, _ = timed(partial(run, prompts), partial(run, prompts[:batch_size]), args.repeats)
            generation[batch_size] = {"seconds": round(seconds, 2), "items_per_s": round(len(prompts) / seconds, 3)}
            print(f"generation batch {batch_size}: {generation[batch_size]}", flush=True)
        generation["speedup"] = round(generation[1]["seconds"] / generation[args.generation_batch]["seconds"], 2)
    else:
        print(f"no dataset at {args.data} (run `medllm data` first): generation throughput skipped")

    report = {
        "protocol": (
            f"model {config.model.name} float32, torch threads {torch.get_num_threads()}; median of "
            f"{args.repeats} runs after a warm-up. MCQ: {len(items)} MMLU-medical questions (seeded sample), "
            f"lm-eval log-likelihood 0-shot, 4 requests a question, one-token letter choices sharing a row. "
            f"Generation: {args.prompts} test prompts of {args.data}, greedy, max {args.max_new_tokens} new "
            f"tokens, stopped at the rationale."
        ),
        "mcq": mcq,
        "generation": generation,
    }
    atomic_write_json(args.out, report)
    print(json.dumps(report, indent=2))
    print("\n| path | batch | seconds | items/s | speedup |\n| --- | --- | --- | --- | --- |")
    for batch_size, row in mcq.items():
        print(f"| mcq | {batch_size} | {row['seconds']} | {row['items_per_s']} | {row['speedup_vs_first']}x |")
    if generation:
        for batch_size in (1, args.generation_batch):
            row = generation[batch_size]
            print(
                f"| generation | {batch_size} | {row['seconds']} | {row['items_per_s']} | "
                f"{generation['speedup'] if batch_size != 1 else 1.0}x |"
            )


if __name__ == "__main__":
    main()
