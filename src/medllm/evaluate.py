"""``medllm eval``: top-1 / top-5 diagnosis accuracy on held-out cases.

One run scores, on the same cases:

- ``retrieval``: the recipe's retriever alone (no LLM), its own ranking; the
  report also compares BM25, MiniLM finding embeddings and their fusion on
  the same cases, each ranking the whole disease vocabulary;
- ``base_rag``: the base model, prompted with the retrieved candidates;
- ``finetuned_rag``: the fine-tuned model, with the same candidates;
- ``base_closed_book``: the base model without candidates.

Answers are generated greedily, parsed into a ranked list (numbered lines
before the rationale) and each line is mapped to the disease vocabulary by
:class:`medllm.prompts.DiseaseMatcher`. A case counts for top-k when the true
disease is among the first k distinct diseases named.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from medllm.config import Config
from medllm.data import load_index, load_split
from medllm.errors import MedllmError
from medllm.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from medllm.models import load_model, load_tokenizer
from medllm.prompts import RATIONALE, DiseaseMatcher, build_messages
from medllm.retrieval import METHODS

log = logging.getLogger(__name__)

TOP_K = (1, 5)
PROTOCOL = ("held-out simulated cases ({split} split, seed-separated from training); greedy decoding, "
            "max {max_new_tokens} new tokens, stopped at the rationale (only the ranked list is scored), "
            "the model's chat template; answer lines matched to the "
            "disease vocabulary by normalised name or synonym (whole words, subtype numbers respected); "
            "top-k = true disease among the first k distinct diseases named")
LLM_CONDITIONS = {
    "base_rag": ("base", True),
    "finetuned_rag": ("finetuned", True),
    "base_closed_book": ("base", False),
}


@torch.inference_mode()
def generate_answers(model, tokenizer, conversations: list[list[dict]], batch_size: int,
                     max_new_tokens: int, stop_strings: list[str] | None = None,
                     desc: str = "generate") -> list[str]:
    """Greedy answers for chat ``conversations``, batched by similar length.

    Generation of a row ends at the end-of-turn token or at any of ``stop_strings``.
    """
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    tokenizer.padding_side = "left"
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
        output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                stop_strings=stop_strings, tokenizer=tokenizer)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            answers[i] = text.strip()
    return answers


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(first: list[bool], second: list[bool]) -> dict:
    """Exact (binomial) McNemar test on paired outcomes of the same cases, two-sided."""
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    n = only_first + only_second
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2 ** n if n else 1.0
    return {"only_first": only_first, "only_second": only_second, "p_value": min(1.0, 2 * tail)}


def score(rankings: list[list[str]], golds: list[str], sources: list[str]) -> dict:
    """Top-k accuracy overall and per source, each with n, hits and a 95% CI."""
    def block(idx: list[int]) -> dict:
        result = {"n": len(idx)}
        for k in TOP_K:
            hits = sum(golds[i] in rankings[i][:k] for i in idx)
            low, high = wilson_interval(hits, len(idx))
            result[f"top{k}"] = {"accuracy": hits / len(idx), "hits": hits, "ci95": [low, high]}
        result["answered"] = sum(bool(rankings[i]) for i in idx) / len(idx)
        return result

    everything = list(range(len(golds)))
    out = {"all": block(everything)}
    for source in sorted(set(sources)):
        out[source] = block([i for i in everything if sources[i] == source])
    return out


def evaluate(config: Config, adapter: Path | None = None) -> dict:
    """Score every configured condition; write ``eval/metrics.json`` and ``eval/report.md``."""
    cfg = config.eval
    cases = load_split(config.data_dir, cfg.split)
    if cfg.max_cases is not None and cfg.max_cases < len(cases):
        cases = cases.shuffle(seed=0).select(range(cfg.max_cases))
    if len(cases) == 0:
        raise MedllmError(f"{config.data_dir}: the {cfg.split} split is empty")
    index, _ = load_index(config)
    diseases = index.diseases
    matcher = DiseaseMatcher(diseases)
    golds, sources = cases["disease_id"], cases["source"]
    k_max = max(TOP_K)

    adapter = Path(adapter) if adapter else config.output_dir / "adapter"
    needs_model = [c for c in cfg.conditions if c in LLM_CONDITIONS]
    if "finetuned_rag" in needs_model and not (adapter / "adapter_config.json").is_file():
        raise MedllmError(f"no fine-tuned adapter at {adapter}: run `medllm train` first "
                          "or drop finetuned_rag from eval.conditions")
    model = tokenizer = None
    if needs_model:
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, adapter if "finetuned_rag" in needs_model else None)

    results, predictions = {}, [dict(id=i, disease_id=g) for i, g in zip(cases["id"], golds)]
    for condition in cfg.conditions:
        if condition == "retrieval":
            rankings = [r[:k_max] for r in cases["retrieved"]]
        else:
            which, with_candidates = LLM_CONDITIONS[condition]
            conversations = (cases["prompt"] if with_candidates else
                             [build_messages(v, None, config.data.differential_size) for v in cases["vignette"]])
            base_context = model.disable_adapter() if which == "base" and hasattr(model, "disable_adapter") else nullcontext()
            with base_context:
                answers = generate_answers(model, tokenizer, conversations, cfg.batch_size, cfg.max_new_tokens,
                                           stop_strings=[RATIONALE], desc=condition)
            rankings = [matcher.rank(a, k_max) for a in answers]
            for p, a in zip(predictions, answers):
                p[f"{condition}_answer"] = a
        for p, r in zip(predictions, rankings):
            p[f"{condition}_ranking"] = r
        results[condition] = score(rankings, golds, sources)
        log.info("%s: top-1 %.3f top-5 %.3f (n=%d)", condition, results[condition]["all"]["top1"]["accuracy"],
                 results[condition]["all"]["top5"]["accuracy"], len(golds))

    retrievers = {}
    if "retrieval" in cfg.conditions:
        for method in METHODS:
            hits = index.search_many(list(cases["vignette"]), k_max, method)
            retrievers[method] = score([[d.id for d, _ in h] for h in hits], golds, sources)
    paired = {}
    if "finetuned_rag" in results and "base_rag" in results:
        for k in TOP_K:
            hit = {c: [g in p[f"{c}_ranking"][:k] for g, p in zip(golds, predictions)] for c in ("finetuned_rag", "base_rag")}
            paired[f"top{k}"] = mcnemar_exact(hit["finetuned_rag"], hit["base_rag"])
    metrics = {
        "protocol": PROTOCOL.format(split=cfg.split, max_new_tokens=cfg.max_new_tokens),
        "n": len(golds),
        "split": cfg.split,
        "model": config.model.name,
        "adapter": str(adapter) if "finetuned_rag" in cfg.conditions else None,
        "vocabulary_size": len(diseases),
        "num_candidates": config.data.num_candidates,
        "retriever": config.data.retriever,
        "conditions": results,
        "retrievers": retrievers or None,
        "finetuned_vs_base_rag": paired or None,
    }
    out = config.output_dir / "eval"
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_jsonl(out / "predictions.jsonl", predictions)
    atomic_write_text(out / "report.md", render_report(metrics, predictions))
    return metrics


DESCRIPTIONS = {
    "retrieval": "retrieval alone (no LLM)",
    "base_rag": "base model + retrieved candidates",
    "finetuned_rag": "fine-tuned model + retrieved candidates",
    "base_closed_book": "base model, no candidates",
}


def _pct(block: dict, k: int) -> str:
    top = block[f"top{k}"]
    return f"{top['accuracy']:.1%} [{top['ci95'][0]:.1%}, {top['ci95'][1]:.1%}]"


def render_report(metrics: dict, predictions: list[dict]) -> str:
    results = metrics["conditions"]
    lines = [
        "# medllm diagnosis evaluation", "",
        f"Model `{metrics['model']}`; adapter `{metrics['adapter']}`; n = {metrics['n']} held-out cases; "
        f"vocabulary of {metrics['vocabulary_size']} diseases; {metrics['num_candidates']} candidates retrieved "
        f"by `{metrics['retriever']}`.",
        "", f"Protocol: {metrics['protocol']}. Brackets: 95% Wilson intervals.", "",
        "| condition | what | n | top-1 | top-5 | answered |", "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in results.items():
        block = res["all"]
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | {block['n']} | {_pct(block, 1)} | {_pct(block, 5)} "
                     f"| {block['answered']:.1%} |")
    lines += ["", "## Per source", "", "| condition | source | n | top-1 | top-5 |", "| --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        for source, block in res.items():
            if source != "all":
                lines.append(f"| {name} | {source} | {block['n']} | {_pct(block, 1)} | {_pct(block, 5)} |")
    if metrics.get("retrievers"):
        lines += ["", "## Retrieval methods", "",
                  "Each method ranks the whole vocabulary for the same cases; no LLM.", "",
                  "| method | n | top-1 | top-5 | " + " | ".join(f"top-1 {s}" for s in _sources(metrics)) + " |",
                  "| --- | --- | --- | --- | " + " | ".join("---" for _ in _sources(metrics)) + " |"]
        for method, res in metrics["retrievers"].items():
            per_source = " | ".join(_pct(res[s], 1) for s in _sources(metrics))
            lines.append(f"| {method} | {res['all']['n']} | {_pct(res['all'], 1)} | {_pct(res['all'], 5)} "
                         f"| {per_source} |")
    lines += ["", "## Reading", ""] + _comparison(results)
    for k, test in (metrics.get("finetuned_vs_base_rag") or {}).items():
        lines.append(f"- Paired exact McNemar test, {k}, fine-tuned vs base (same candidates, same cases): "
                     f"{test['only_first']} cases right only after fine-tuning, {test['only_second']} only before; "
                     f"p = {test['p_value']:.2g}.")
    lines += ["", "## Examples", ""]
    for p in predictions[:3]:
        lines.append(f"- `{p['id']}` (true: `{p['disease_id']}`)")
        for key, value in p.items():
            if key.endswith("_answer"):
                lines.append(f"  - {key[:-7]}: " + value.replace("\n", " / ")[:400])
    return "\n".join(lines) + "\n"


def _sources(metrics: dict) -> list[str]:
    return [s for s in next(iter(metrics["retrievers"].values())) if s != "all"]


def _comparison(results: dict) -> list[str]:
    """Plain sentences comparing the conditions, whichever way the numbers go."""
    def acc(name: str, k: int) -> float:
        return results[name]["all"][f"top{k}"]["accuracy"]

    sentences = []
    if {"finetuned_rag", "base_rag"} <= results.keys():
        for k in TOP_K:
            delta = acc("finetuned_rag", k) - acc("base_rag", k)
            sentences.append(f"- Fine-tuning changes top-{k} by {100 * delta:+.1f} percentage points over the base "
                             "model with the same candidates.")
    if {"finetuned_rag", "retrieval"} <= results.keys():
        for k in TOP_K:
            delta = acc("finetuned_rag", k) - acc("retrieval", k)
            verdict = "above" if delta > 0 else "below" if delta < 0 else "equal to"
            sentences.append(f"- The fine-tuned model is {100 * abs(delta):.1f} percentage points {verdict} "
                             f"retrieval alone at top-{k}.")
    return sentences or ["- Only one condition was scored."]
