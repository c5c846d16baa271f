"""The memory guard's estimate against the measured peak of a training step, per batch size.

For each ``--batch`` B, the recipe's trainer (:func:`medllm.train.recipe.build_trainer`,
batch B, no activation checkpointing) takes one optimizer step on its first
batch — transformers' length-grouped sampler puts the longest examples first —
and :func:`medllm.train.memory.estimate_memory` for that batch's tokens is set beside
the measured peak of tensor memory: CUDA's max allocated on a GPU; on a CPU,
the peak of torch.profiler's memory timeline (weights, gradients, optimizer
state, activations and temporaries; not the interpreter, libraries or the
allocator's slack, which the process's RSS also holds).

    python benchmarks/memory_guard.py [--data runs/demo/data] [--batch 1 2 4 8]

Prints a table and writes ``runs/bench/memory_guard.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from medllm.config import DEFAULT_RECIPE, load_config
from medllm.io import atomic_write_json
from medllm.train.memory import GiB, activation_bytes_per_token, estimate_memory
from medllm.train.recipe import build_trainer


def cpu_peak(prof) -> int:
    """Peak bytes of live tensors over a CPU profile's memory timeline."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return int(max(sum(row) for row in sizes))


def measure(config) -> dict:
    """One optimizer step on the trainer's first batch: the guard's estimate and the measured peak (bytes)."""
    from torch.profiler import ProfilerActivity, profile
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy

    trainer = build_trainer(config)
    trainer.args.eval_strategy, trainer.args.save_strategy = IntervalStrategy.NO, SaveStrategy.NO  # one step only
    per_token = activation_bytes_per_token(trainer)
    tokens = []
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        tokens.append(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting
    if trainer.model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        peak = torch.cuda.max_memory_allocated()
    else:
        with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
        ) as prof:
            trainer.train()
        peak = cpu_peak(prof)
    estimate = estimate_memory(trainer, False, per_token, tokens=tokens[0])
    return {
        "batch": config.train.per_device_train_batch_size,
        "tokens": tokens[0],
        "activation_bytes_per_token": round(per_token[0]),
        "estimate_gib": round(estimate["total"] / GiB, 3),
        "measured_gib": round(peak / GiB, 3),
        "estimate_over_measured": round(estimate["total"] / peak, 3),
        "parts_gib": {k: round(estimate[k] / GiB, 3) for k in ("weights", "lora_state", "activations")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="dataset folder (medllm data)")
    parser.add_argument("--model", help="model name or folder (default: the recipe's)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/memory_guard.json"))
    args = parser.parse_args(argv)

    rows = []
    for batch in args.batch:
        overrides = {
            "data.dir": str(args.data),
            "output_dir": tempfile.mkdtemp(),
            "train.per_device_train_batch_size": batch,
            "train.gradient_checkpointing": "false",
            "train.max_steps": 1,
            "train.eval_accuracy_samples": "null",
        }
        if args.model:
            overrides["model.name"] = args.model
        config = load_config(args.config, overrides)
        # each batch size in a fresh process: a clean CUDA peak, and the profiler's records freed
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            rows.append(pool.submit(measure, config).result())
        print(json.dumps(rows[-1]), flush=True)
    summary = {
        "config": args.config,
        "model": config.model.name,
        "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
        "max_length": config.train.max_length,
        "results": rows,
    }
    atomic_write_json(args.out, summary)
    print(
        "\n| batch | tokens | guard's estimate GiB | measured peak GiB | estimate / measured |\n"
        "| ---: | ---: | ---: | ---: | ---: |"
    )
    for r in rows:
        print(
            f"| {r['batch']} | {r['tokens']:,} | {r['estimate_gib']} | {r['measured_gib']} | "
            f"{r['estimate_over_measured']} |"
        )
    print(f"\nwrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
