"""Free-text clinical question answering scored by ROUGE-L and token F1.

The items are Q&A records: those of the dataset's test split (e.g. the
clinosim discharge-summary questions of :mod:`medllm.data.simulators`), or a
file users bring (EHR-DS-QA discharge-note questions, HealthQA consumer
questions, read by :mod:`medllm.data.sources`). The model answers the prompt
greedily and the answer is compared with the reference. Token F1 is
SQuAD's (lower case, punctuation and articles removed, bag-of-tokens
overlap); ROUGE-L is the F-measure of the longest common subsequence from
Google's ``rouge-score`` (Porter stemming).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import numpy as np

from medllm.config import Config
from medllm.data.dataset import load_split
from medllm.data.loaders import iter_records
from medllm.data.sources import reservoir_sample
from medllm.errors import MedllmError
from medllm.eval.stats import bootstrap_ci, paired_bootstrap_ci
from medllm.generation import adapter_mode, generate_answers
from medllm.markdown import table

PROTOCOL = (
    "free-text answers to the {source} questions of {file} ({n} items{sample}): greedy, max {max_new_tokens} "
    "new tokens, the model's chat template; token F1 = SQuAD normalisation (lower case, no punctuation or "
    "articles) and bag-of-tokens overlap; ROUGE-L = rouge-score F-measure of the longest common subsequence, "
    "Porter stemming; means over items with 95% percentile bootstrap intervals (1000 resamples, seed 0)"
)


def normalize_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after :func:`normalize_tokens` (SQuAD's F1)."""
    pred, ref = normalize_tokens(prediction), normalize_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F-measure of each prediction against its reference (rouge-score, stemmed)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]


QA_TASKS = ("qa", "consumer_qa")


def load_qa_items(config: Config) -> tuple[list[dict], int, str]:
    """The configured Q&A items (a seeded sample of ``eval.qa_max_items``), how many there were, and their origin.

    ``eval.qa_source: dataset`` takes the Q&A records of the dataset's test
    split (from ``data.sources``); ``ehrdsqa`` or ``healthqa`` read
    ``eval.qa_file`` once, streaming, into a reservoir sample, so a 156k-pair
    EHR-DS-QA file is never held in memory.
    """
    cfg = config.eval
    if cfg.qa_source == "dataset":
        rows = load_split(config.data_dir, "test")
        rows = rows.filter(lambda task: task in QA_TASKS, input_columns="task") if "task" in rows.column_names else []
        records = ({"id": r["id"], "messages": r["prompt"], "reference": r["completion"][0]["content"]} for r in rows)
        origin = f"the test split of {config.data_dir}"
    else:
        if cfg.qa_file is None:
            raise MedllmError(f"eval.qa_source {cfg.qa_source} needs eval.qa_file")
        records = iter_records(cfg.qa_source, Path(cfg.qa_file))
        origin = Path(cfg.qa_file).name
    sample, seen = reservoir_sample(records, cfg.qa_max_items)
    if not sample:
        raise MedllmError(f"no {cfg.qa_source} questions in {origin}")
    return sample, seen, origin


def _mean(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "bootstrap_ci95": bootstrap_ci(values), "n": len(values)}


def evaluate_qa(model, tokenizer, config: Config, models: list[str]) -> tuple[dict, list[dict]]:
    """Each of ``models`` answers the same Q&A items; ROUGE-L and token F1 per model, and fine-tuned minus base."""
    cfg = config.eval
    items, total, origin = load_qa_items(config)
    sample = f", seeded sample of {total}" if total > len(items) else ""
    result = {
        "protocol": PROTOCOL.format(
            source=cfg.qa_source, file=origin, n=len(items), sample=sample, max_new_tokens=cfg.qa_max_new_tokens
        ),
        "n": len(items),
        "sampled_from": total,
        "models": {},
    }
    rows = [{"id": r["id"], "reference": r["reference"]} for r in items]
    scores = {}
    for which in models:
        with adapter_mode(model, which):
            answers = generate_answers(
                model,
                tokenizer,
                [r["messages"] for r in items],
                cfg.batch_size,
                cfg.qa_max_new_tokens,
                desc=f"qa {which}",
            )
        f1 = [token_f1(a, r["reference"]) for a, r in zip(answers, items)]
        rouge = rouge_l(answers, [r["reference"] for r in items])
        scores[which] = {"token_f1": f1, "rouge_l": rouge}
        result["models"][which] = {"token_f1": _mean(f1), "rouge_l": _mean(rouge)}
        for row, answer, a, b in zip(rows, answers, f1, rouge):
            row.update({f"{which}_answer": answer, f"{which}_token_f1": round(a, 4), f"{which}_rouge_l": round(b, 4)})
    if {"base", "finetuned"} <= scores.keys():
        result["finetuned_minus_base"] = {
            metric: {
                "difference": float(np.mean(scores["finetuned"][metric]) - np.mean(scores["base"][metric])),
                "bootstrap_ci95": paired_bootstrap_ci(scores["finetuned"][metric], scores["base"][metric]),
            }
            for metric in ("token_f1", "rouge_l")
        }
    return result, rows


def report_lines(result: dict) -> list[str]:
    """Markdown section of the free-text Q&A scores."""

    def cell(block: dict) -> str:
        low, high = block["bootstrap_ci95"] or (float("nan"), float("nan"))
        return f"{block['mean']:.3f} [{low:.3f}, {high:.3f}]"

    rows = [
        [which, block["token_f1"]["n"], cell(block["token_f1"]), cell(block["rouge_l"])]
        for which, block in result["models"].items()
    ]
    lines = [
        "## Free-text question answering",
        "",
        f"Protocol: {result['protocol']}.",
        "",
        *table(["model", "n", "token F1", "ROUGE-L"], rows),
    ]
    for metric, diff in (result.get("finetuned_minus_base") or {}).items():
        low, high = diff["bootstrap_ci95"] or (float("nan"), float("nan"))
        lines.append(
            f"\nFine-tuned minus base, {metric}: {diff['difference']:+.3f}, "
            f"95% paired bootstrap CI [{low:+.3f}, {high:+.3f}]."
        )
    return lines
