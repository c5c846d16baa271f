"""Token lengths of re-rank prompts (what ``train.max_length`` and llama.cpp's ``serve.n_ctx`` must hold).

Builds the re-rank rows :mod:`medllm.data.rerank` writes, for simulated cases of the recipe's diseases and for a
seeded sample of the validation part of a phenopacket collection, and counts each prompt's tokens with the
recipe's chat template (answer excluded)::

    .venv/bin/python benchmarks/rerank_prompt_lengths.py --phenopackets phenopacket-store.zip [--cases 200]
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from medllm.config import DEFAULT_RECIPE, load_config
from medllm.data.build import LICENSES, select_diseases
from medllm.data.phenopackets import load_phenopackets, split_by_disease
from medllm.data.rerank import RerankBuilder, simulated_records
from medllm.models import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phenopackets", required=True, help="a phenopacket folder or zip")
    parser.add_argument("--cases", type=int, default=200, help="validation cases sampled (seed 0)")
    args = parser.parse_args()
    config = load_config(DEFAULT_RECIPE, {})
    tokenizer, builder = load_tokenizer(config.model), RerankBuilder.from_config(config)

    def tokens(rows) -> np.ndarray:
        render = tokenizer.apply_chat_template
        prompts = (render(r["messages"], tokenize=False, add_generation_prompt=True) for r in rows)
        return np.array([len(tokenizer(p)["input_ids"]) for p in prompts])

    validation = split_by_disease(load_phenopackets(args.phenopackets).cases)["validation"]
    sample = random.Random(0).sample(validation, min(args.cases, len(validation)))
    published = [r for c in sample if (r := builder.row(c, c.id, "phenopackets", "train", "")) is not None]
    simulated = list(simulated_records(select_diseases(config.data)[:100], config, builder, LICENSES))
    for name, rows in (("simulated", simulated), ("published (validation)", published)):
        n = tokens(rows)
        p50, p90, top = np.percentile(n, [50, 90, 100])
        print(
            f"{name}: n = {len(n)}, tokens p50 {p50:.0f}, p90 {p90:.0f}, max {top:.0f}; "
            f"over 1536: {np.mean(n > 1536):.1%}, over 2048: {np.mean(n > 2048):.1%}"
        )


if __name__ == "__main__":
    main()
