"""Training throughput: plain Transformers + PEFT against medllm's training path, in one run.

Both paths train the same LoRA (the recipe's ``lora`` section) on the same
model weights and the same tokenized examples, with the same batch size and
learning rate (constant, AdamW), for ``--warmup`` + ``--steps`` optimizer steps:

- **baseline**: ``peft.get_peft_model`` and a plain PyTorch loop, batches in
  random order padded to their longest row, loss from the model's own head
  (full-vocabulary logits for every position), as the plain
  Hugging Face + PEFT baseline measurement does, but on real lengths;
- **medllm**: the recipe's trainer (:class:`medllm.train.loss.AnswerOnlyLossTrainer`
  with :func:`medllm.train.recipe.training_arguments`): batches grouped by length,
  loss on the answer positions only (TRL's fused LM head on GPUs, logits of
  the answer positions elsewhere), no full-vocabulary logits for the batch;
- **trl**: the same arguments with TRL's own ``SFTTrainer`` loss (its fused
  LM head: compact on Triton devices, every position elsewhere);
- **medllm_packed**: the same with ``train.packing`` (TRL's best-fit packing
  into rows of ``max_length`` tokens, padding-free, position ids restarting
  per example), with as many packed rows a step as hold about the same
  tokens as the unpacked batch.

Each path runs in its own process (peak memory: CUDA's max allocated, or the
process's peak RSS on a CPU, shown beside the memory guard's estimate,
:func:`medllm.train.memory.estimate_memory`, for the largest batch the path took).
Throughput counts real (non-pad) tokens; the figure is the median over the
measured steps, and the ratio to the baseline is what to quote (the machine
is shared). Learning is checked two ways: the
loss of each path on the same fixed batches before training must agree with
the baseline's within ``--tolerance`` (relative), and the validation loss
after training is reported beside the baseline's.

On this CPU (the recipe's model, SmolLM2-135M, on the demo dataset)::

    python benchmarks/train_throughput.py [--data runs/demo/data] [--steps 8] [--profile runs/bench/profile]

It also writes the dataset's (prompt, answer) token lengths and the tokenizer
to ``runs/bench/train_shapes/`` so a GPU machine without the model file can
time Llama shapes with random weights on the same length distribution::

    python benchmarks/train_throughput.py --shape llama2-7b --shapes-dir runs/bench/train_shapes

Prints a table and writes ``runs/bench/train_throughput[_SHAPE].json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from medllm.config import DEFAULT_RECIPE, load_config
from medllm.io import atomic_write_json

SHAPES = {  # the shapes of the plain Hugging Face + PEFT baseline measurement
    "llama2-7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
    },
    "tinyllama-1.1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
    },
    "mini": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 32000,
    },
}
PATHS = ("baseline", "trl", "medllm", "medllm_packed")
PEAK_TFLOPS = float(os.environ.get("PEAK_TFLOPS", "790"))  # the anchors' H100 bf16 figure
CHECK_BATCHES = 2


# ----------------------------------------------------------------------------- examples


def recipe_examples(config) -> tuple[list[dict], list[dict]]:
    """Training and validation examples tokenized exactly as ``medllm train`` does (its own trainer)."""
    from medllm.train.recipe import build_trainer

    trainer = build_trainer(config)
    keep = ("input_ids", "labels")  # TRL labels: -100 on the prompt
    return (
        [{k: r[k] for k in keep} for r in trainer.train_dataset],
        [{k: r[k] for k in keep} for r in trainer.eval_dataset],
    )


def random_examples(lengths: list[list[int]], vocab_size: int, seed: int) -> list[dict]:
    """Random token ids with the dataset's (prompt, answer) lengths: speed does not depend on the ids."""
    rng = random.Random(seed)
    examples = []
    for p, a in lengths:
        ids = [rng.randrange(3, vocab_size) for _ in range(p + a)]
        examples.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return examples


def padded(examples: list[dict], pad_id: int, device) -> dict:
    """A batch padded to its longest row; labels only on answer tokens."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e["labels"])
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


# ----------------------------------------------------------------------------- models


def build_model(spec: dict):
    """The recipe's model (``spec['shape']`` None) or a random-weight Llama shape, and its pad id."""
    if spec["shape"] is None:
        from medllm.models import load_model, load_tokenizer

        config = load_config(spec["config"], spec["overrides"])
        model, tokenizer = load_model(config.model), load_tokenizer(config.model)
        model.train()
        return model, tokenizer
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    torch.manual_seed(0)
    cfg = LlamaConfig(
        **SHAPES[spec["shape"]],
        max_position_embeddings=4096,
        attn_implementation="sdpa",
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(spec["device"]):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if spec["device"] == "cuda" else torch.float32)
    return model, tokenizer


def bench_arguments(config, output_dir: str, steps: int, packing: bool = False, rows: int | None = None):
    """The recipe's training arguments for a timed run: constant learning rate, no saving or evaluation."""
    import dataclasses

    from medllm.train.recipe import training_arguments

    args = training_arguments(config)
    return dataclasses.replace(
        args,
        output_dir=output_dir,
        max_steps=steps,
        warmup_steps=0,
        lr_scheduler_type="constant",
        gradient_accumulation_steps=1,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10**6,
        packing=packing,
        per_device_train_batch_size=rows or args.per_device_train_batch_size,
        disable_tqdm=True,
    )


def flops_per_token(model, mean_row: float) -> float:
    """The anchors' count: 4·N (forward and input gradients of the frozen weights) + 6·L·s·h (attention)."""
    cfg = model.config.get_text_config()
    n = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name and "lora_" not in name)
    return 4 * n + 6 * cfg.num_hidden_layers * mean_row * cfg.hidden_size


# ----------------------------------------------------------------------------- the two paths


def run_baseline(spec, model, tokenizer, train, check, held_out) -> dict:
    from peft import get_peft_model

    from medllm.train.recipe import lora_config

    config = load_config(spec["config"], spec["overrides"])
    device = spec["device"]
    model = get_peft_model(model, lora_config(config))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.train.learning_rate,
        weight_decay=config.train.weight_decay,
    )
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    pad = tokenizer.pad_token_id

    def loss_of(batch):
        with torch.no_grad(), autocast:
            return model(**padded(batch, pad, device)).loss.item()

    model.eval()
    before = [loss_of(b) for b in check]
    model.train()
    order = list(range(len(train)))
    random.Random(spec["seed"]).shuffle(order)
    size = config.train.per_device_train_batch_size
    times, real, computed = [], [], []
    with profiled(spec, "baseline"):
        for step in range(spec["warmup"] + spec["steps"]):
            examples = [train[order[(step * size + i) % len(order)]] for i in range(size)]
            batch = padded(examples, pad, device)
            sync(device)
            started = time.perf_counter()
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            times.append(time.perf_counter() - started)
            real.append(int(batch["attention_mask"].sum()))
            computed.append(batch["input_ids"].numel())
    model.eval()
    return {
        "before": before,
        "after": [loss_of(b) for b in held_out],
        "times": times,
        "real": real,
        "computed": computed,
        "model": model,
    }


def run_trainer(spec, path: str, model, tokenizer, train, check, held_out) -> dict:
    """``trl``, ``medllm`` or ``medllm_packed``: a trainer with the recipe's arguments, timed per step."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from medllm.train.loss import AnswerOnlyLossTrainer
    from medllm.train.memory import activation_bytes_per_token, estimate_memory
    from medllm.train.recipe import lora_config

    trainer_class = SFTTrainer if path == "trl" else AnswerOnlyLossTrainer
    packing = path == "medllm_packed"
    config = load_config(spec["config"], spec["overrides"])
    device = spec["device"]
    rows = None
    if packing:  # packed rows holding about the unpacked batch's tokens
        mean = sum(len(e["input_ids"]) for e in train) / len(train)
        rows = max(1, round(config.train.per_device_train_batch_size * mean / config.train.max_length))
    args = bench_arguments(config, tempfile.mkdtemp(), spec["warmup"] + spec["steps"], packing, rows)
    if device == "cuda":
        import dataclasses

        args = dataclasses.replace(args, bf16=True)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        peft_config=lora_config(config),
    )
    real, computed, times = [], [], []
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        real.append(sum(len(e["input_ids"]) for e in examples))
        computed.append(batch["input_ids"].numel())
        return batch

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync(device)
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync(device)
            times.append(time.perf_counter() - self.started)

    def loss_of(batch):
        trainer.model.eval()
        with torch.no_grad():
            return trainer.compute_loss(trainer.model, trainer._prepare_inputs(collate(batch))).item()

    before = [loss_of(b) for b in check]
    per_token = None if path == "trl" else activation_bytes_per_token(trainer)
    trainer.data_collator = counting
    trainer.add_callback(Clock())
    with profiled(spec, path):
        trainer.train()
    trainer.data_collator = collate
    out = {
        "before": before,
        "after": [loss_of(b) for b in held_out],
        "times": times,
        "real": real[: len(times)],
        "computed": computed[: len(times)],
        "model": trainer.model,
    }
    if per_token is not None:  # the memory guard's estimate for the largest batch this run took
        estimate = estimate_memory(trainer, False, per_token, tokens=max(computed))
        out["estimate_gib"] = round(estimate["total"] / 2**30, 3)
    return out


@contextmanager
def profiled(spec: dict, path: str):
    """With ``--profile DIR``: torch.profiler over the training steps, its top operators into DIR/PATH.txt."""
    if not spec.get("profile"):
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if spec["device"] == "cuda" else [])
    with profile(activities=activities) as prof:
        yield
    sort = "self_cuda_time_total" if spec["device"] == "cuda" else "self_cpu_time_total"
    Path(spec["profile"]).mkdir(parents=True, exist_ok=True)
    (Path(spec["profile"]) / f"{path}.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=30))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def worker(spec: dict, path: str, queue) -> None:
    """One path in its own process; puts its measurements (or the error) on ``queue``."""
    try:
        torch.manual_seed(spec["seed"])
        data = json.loads(Path(spec["examples"]).read_text())
        train, held_out = data["train"], data["held_out"]
        size = load_config(spec["config"], spec["overrides"]).train.per_device_train_batch_size
        check = [train[i * size : (i + 1) * size] for i in range(CHECK_BATCHES)]
        held = [held_out[i : i + size] for i in range(0, len(held_out), size)]
        model, tokenizer = build_model(spec)
        if spec["device"] == "cuda":  # training's peak, not the random shape's float32 initialisation
            torch.cuda.reset_peak_memory_stats()
        run = run_baseline if path == "baseline" else partial(run_trainer, path=path)
        out = run(spec, model=model, tokenizer=tokenizer, train=train, check=check, held_out=held)
        measured = slice(spec["warmup"], None)
        tokens_s = [r / t for r, t in zip(out["real"][measured], out["times"][measured])]
        mean_row = sum(len(e["input_ids"]) for e in train) / len(train)
        result = {
            "path": path,
            "tokens_per_s": round(statistics.median(tokens_s), 1),
            "tokens_per_s_all": [round(x, 1) for x in tokens_s],
            "step_s": round(statistics.median(out["times"][measured]), 3),
            "real_tokens": sum(out["real"][measured]),
            "computed_tokens": sum(out["computed"][measured]),
            "pad_share": round(1 - sum(out["real"][measured]) / sum(out["computed"][measured]), 3),
            "loss_before": out["before"],
            "val_loss_after": round(statistics.mean(out["after"]), 4),
        }
        if "estimate_gib" in out:
            result["estimate_gib"] = out["estimate_gib"]
        if spec["device"] == "cuda":
            result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            result["mfu"] = round(
                result["tokens_per_s"] * flops_per_token(out["model"], mean_row) / (PEAK_TFLOPS * 1e12), 3
            )
        else:
            result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        queue.put(result)
    except BaseException as exc:
        queue.put({"path": path, "error": repr(exc)[:500]})


def combined(found: list[dict], baseline: list[dict] | None) -> dict:
    """One path's rounds: the median throughput, and the median of its per-round ratios to the baseline."""
    ok = [r for r in found if "error" not in r]
    if not ok:
        return found[0]
    result = dict(
        ok[0],
        tokens_per_s_rounds=[r["tokens_per_s"] for r in ok],
        tokens_per_s=statistics.median(r["tokens_per_s"] for r in ok),
    )
    pairs = [(r, b) for r, b in zip(found, baseline or []) if "error" not in r and "error" not in b]
    if pairs:
        ratios = [r["tokens_per_s"] / b["tokens_per_s"] for r, b in pairs]
        result.update(
            ratios_to_baseline=[round(x, 3) for x in ratios], ratio_to_baseline=round(statistics.median(ratios), 2)
        )
    for key in ("peak_gib", "peak_rss_mb"):
        if key in result:
            result[key] = max(r[key] for r in ok)
    return result


def run_path(spec: dict, path: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=worker, args=(spec, path, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="dataset folder (medllm data)")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="random-weight Llama shape instead of the recipe model")
    parser.add_argument(
        "--shapes-dir",
        type=Path,
        default=Path("runs/bench/train_shapes"),
        help="token lengths and tokenizer written by a recipe-model run (read with --shape)",
    )
    parser.add_argument("--batch", type=int, help="per-device batch size (default: the recipe's)")
    parser.add_argument("--max-length", type=int, help="longest example (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--examples", type=int, default=512, help="training examples to draw batches from")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="largest relative difference of the before-training losses from the baseline's",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all paths; medians and per-round ratios")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile",
        type=Path,
        help="write each path's top operators (torch.profiler) here; its timings then include the profiler's overhead",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {"data.dir": str(args.data), "output_dir": tempfile.mkdtemp()}
    if args.batch:
        overrides["train.per_device_train_batch_size"] = args.batch
    if args.max_length:
        overrides["train.max_length"] = args.max_length
    config = load_config(args.config, overrides)
    rng = random.Random(args.seed)
    if args.shape is None:
        train, held_out = recipe_examples(config)
        args.shapes_dir.mkdir(parents=True, exist_ok=True)
        lengths = [[e["labels"].count(-100), len(e["labels"]) - e["labels"].count(-100)] for e in train]
        atomic_write_json(args.shapes_dir / "lengths.json", {"source": str(args.data), "train": lengths})
        from medllm.models import load_tokenizer

        load_tokenizer(config.model).save_pretrained(args.shapes_dir / "tokenizer")
    else:
        lengths = json.loads((args.shapes_dir / "lengths.json").read_text())["train"]
        examples = random_examples(lengths, SHAPES[args.shape]["vocab_size"], args.seed)
        train, held_out = examples[16:], examples[:16]
    train = rng.sample(train, min(args.examples, len(train)))
    held_out = held_out[:16]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"train": train, "held_out": held_out}, fh)
    spec = {
        "config": args.config,
        "overrides": overrides,
        "shape": args.shape,
        "device": device,
        "tokenizer": str(args.shapes_dir / "tokenizer"),
        "examples": fh.name,
        "steps": args.steps,
        "warmup": args.warmup,
        "seed": args.seed,
        "profile": str(args.profile) if args.profile else None,
    }

    runs: dict[str, list[dict]] = {path: [] for path in args.paths}
    for repeat in range(args.repeats):  # rounds of every path, so a slow spell hits all paths alike
        for path in args.paths:
            print(f"running {path} (round {repeat + 1} of {args.repeats}) ...", flush=True)
            runs[path].append(run_path(spec, path))
            print(json.dumps(runs[path][-1]), flush=True)
    os.unlink(fh.name)

    results = {path: combined(found, runs.get("baseline")) for path, found in runs.items()}
    base = results.get("baseline", {})
    rows, agree = [], True
    for path, r in results.items():
        if "error" in r:
            rows.append(f"| {path} | error: {r['error'][:80]} |")
            continue
        ratio = r.get("ratio_to_baseline")
        diff = (
            max(abs(a - b) / b for a, b in zip(r["loss_before"], base["loss_before"])) if "loss_before" in base else 0
        )
        r["loss_before_max_rel_diff"] = round(diff, 5)
        agree &= diff <= args.tolerance
        memory = f"{r['peak_gib']} GiB" if "peak_gib" in r else f"{r['peak_rss_mb']} MB RSS"
        memory += f" (guard {r['estimate_gib']} GiB)" if "estimate_gib" in r else ""
        rows.append(
            f"| {path} | {r['tokens_per_s']:,.0f} | {ratio or 0:.2f}x | {r['step_s']} | {r['pad_share']:.0%} | "
            f"{memory} | {r.get('mfu', '-')} | {diff:.2%} | {r['val_loss_after']} |"
        )
    cfg = config.train
    summary = {
        "model": args.shape or config.model.name,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "batch": cfg.per_device_train_batch_size,
        "max_length": cfg.max_length,
        "lora_r": config.lora.r,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "examples": len(train),
        "mean_example_tokens": round(sum(len(e["input_ids"]) for e in train) / len(train), 1),
        "tolerance": args.tolerance,
        "losses_agree": agree,
        "load_avg": os.getloadavg(),
        "versions": {
            m: sys.modules[m].__version__ for m in ("torch", "transformers", "peft", "trl") if m in sys.modules
        },
        "results": results,
    }
    out = args.out or Path("runs/bench") / f"train_throughput{'_' + args.shape if args.shape else ''}.json"
    atomic_write_json(out, summary)
    print(
        f"\n{summary['model']} on {summary['device']}, batch {summary['batch']} x <= {summary['max_length']} tokens "
        f"(mean example {summary['mean_example_tokens']}), LoRA r={summary['lora_r']}, median of {args.steps} steps "
        f"after {args.warmup}, {args.repeats} round(s): medians over rounds, ratio = median of per-round ratios\n"
    )
    print(
        "| path | real tokens/s | vs baseline | step s | pad share | peak memory | MFU | loss diff before | "
        "val loss after |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    print("\n".join(rows))
    print(f"\nlosses before training agree within {args.tolerance:.0%}: {agree}; wrote {out}")
    return summary


if __name__ == "__main__":
    main()
