"""Multiple-choice medical benchmarks scored like lm-evaluation-harness.

Each question becomes one request per choice: the prompt (``context``) and the
choice as a continuation (`` A``…`` D`` after a listed question, or the answer
text such as `` yes``). The model's log-likelihood of each continuation is the
sum of the log-softmax of its tokens; ``acc`` takes the argmax, ``acc_norm`` the
argmax after dividing by the choice's length in bytes (lm-eval's definition).

The benchmarks and their prompt templates are in :mod:`medllm.data.benchmarks`.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from medllm.config import Config
from medllm.data.benchmarks import BENCHMARKS, LETTERS, load_benchmark
from medllm.errors import MedllmError
from medllm.eval.stats import ECE_BINS, bootstrap_ci, calibration, paired_comparison
from medllm.generation import adapter_mode, left_padded
from medllm.markdown import table


def _targets(item: dict) -> list[str]:
    """The choices as lm-eval writes them: the letter or the text, without the delimiter."""
    return list(LETTERS[: len(item["choices"])]) if BENCHMARKS[item["benchmark"]].letters else item["choices"]


def _byte_lengths(item: dict) -> np.ndarray:
    """Each choice's length in bytes, acc_norm's divisor."""
    return np.array([len(t.encode("utf-8")) for t in _targets(item)], dtype=float)


def build_requests(item: dict, shots: list[dict], chat: bool, tokenizer=None) -> list[tuple[str, str]]:
    """(context, continuation) per choice of ``item``, after ``shots`` answered examples.

    Plain: lm-eval's layout, header + examples joined by blank lines, continuation
    " " + choice. Chat: each example is a user turn answered by an assistant turn,
    the question the last user turn, and the bare choice is scored after the
    generation prompt.
    """
    spec = BENCHMARKS[item["benchmark"]]
    header = spec.header.format(subject=item["subject"])
    if not chat:
        context = (
            header + "".join(f"{spec.prompt(s)} {_targets(s)[s['answer']]}\n\n" for s in shots) + spec.prompt(item)
        )
        return [(context, " " + t) for t in _targets(item)]
    messages = []
    for shot in shots:
        messages += [
            {"role": "user", "content": spec.prompt(shot)},
            {"role": "assistant", "content": _targets(shot)[shot["answer"]]},
        ]
    messages.append({"role": "user", "content": spec.prompt(item)})
    messages[0] = {"role": "user", "content": header + messages[0]["content"]}
    context = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return [(context, t) for t in _targets(item)]


def select_shots(item: dict, pool: list[dict], k: int) -> list[dict]:
    """The first ``k`` pool items of the item's subject (then of others), never the item itself."""
    if k == 0:
        return []
    same = [p for p in pool if p["subject"] == item["subject"] and p["id"] != item["id"]]
    other = [p for p in pool if p["subject"] != item["subject"]]
    shots = (same + other)[:k]
    if len(shots) < k:
        raise MedllmError(f"{k}-shot needs {k} other questions; the pool has {len(shots)}")
    return shots


# ----------------------------------------------------------------------------- scoring


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split the way lm-eval does.

    Trailing whitespace of the context moves to the continuation, the two are
    encoded together and the continuation is what follows the context's own
    encoding, so merges across the boundary tokenise as the model saw them.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not context_ids or len(whole) <= len(context_ids):
        raise MedllmError(f"cannot score continuation {continuation!r}: empty context or continuation")
    return context_ids, whole[len(context_ids) :]


@torch.inference_mode()
def loglikelihoods(
    model, tokenizer, requests: list[tuple[str, str]], batch_size: int, desc: str = "log-likelihood"
) -> list[float]:
    """Summed log-probability of each continuation given its context.

    Requests whose context + continuation minus its last token are the same
    token row share one forward pass (all the one-token letter choices of a
    question do). Rows are sorted by length, left-padded with an attention mask
    and explicit position ids, and only the last positions' logits are computed
    (``logits_to_keep``): the 49k-word vocabulary makes full logits the
    expensive part.
    """
    encoded = [encode_pair(tokenizer, c, x) for c, x in requests]
    limit = getattr(model.config, "max_position_embeddings", None)
    rows: dict[tuple[int, ...], list[int]] = {}
    for i, (context_ids, continuation_ids) in enumerate(encoded):
        rows.setdefault(tuple(context_ids + continuation_ids[:-1])[-limit if limit else 0 :], []).append(i)
    keys = sorted(rows, key=len, reverse=True)
    scores = [0.0] * len(requests)
    for start in tqdm(range(0, len(keys), batch_size), desc=desc, unit="batch"):
        batch = keys[start : start + batch_size]
        input_ids, mask, positions = left_padded([list(key) for key in batch], tokenizer.pad_token_id)
        keep = max(len(encoded[i][1]) for key in batch for i in rows[key])
        logits = model(
            input_ids=input_ids.to(model.device),
            attention_mask=mask.to(model.device),
            position_ids=positions.to(model.device),
            logits_to_keep=keep,
        ).logits
        # in float32 even for a bf16 model: bf16 log-probabilities near log(1/vocabulary) are too coarse for near-ties
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for b, key in enumerate(batch):
            for i in rows[key]:
                target = torch.tensor(encoded[i][1])
                scores[i] = logprobs[b, keep - len(target) :].gather(-1, target[:, None]).sum().item()
    return scores


# ----------------------------------------------------------------------------- statistics


def _accuracy_block(correct: np.ndarray, subjects: np.ndarray, seed: int) -> dict:
    """Micro and macro accuracy with bootstrap intervals, and per subject."""
    names = sorted(set(subjects))
    groups = [correct[subjects == s] for s in names]
    return {
        "micro": {"value": float(correct.mean()), "ci95": bootstrap_ci(correct, seed=seed), "n": len(correct)},
        "macro": {
            "value": float(np.mean([g.mean() for g in groups])),
            "ci95": bootstrap_ci(*groups, seed=seed),
            "n_subjects": len(names),
        },
        "subjects": {
            s: {"value": float(g.mean()), "ci95": bootstrap_ci(g, seed=seed), "n": len(g)}
            for s, g in zip(names, groups)
        },
    }


def protocol(item: dict, k_shot: int, chat: bool, report_norm: bool) -> str:
    """One line naming how the numbers of ``item``'s benchmark were obtained."""
    delimiter = "" if chat else " "
    targets = ", ".join(f"`{delimiter}{t}`" for t in _targets(item))
    shots = f"{k_shot}-shot (first other questions of the same subject)" if k_shot else "0-shot"
    template = "chat template, choice scored after the generation prompt" if chat else "no chat template"
    norm = "; acc_norm = log-likelihood / choice length in bytes" if report_norm else ""
    return (
        f"lm-eval log-likelihood (log-softmax in float32), {shots}, {template}, continuations {targets}; "
        f"acc = argmax of summed continuation log-likelihood{norm}, an exact tie for the top counting as "
        "wrong; 95% percentile bootstrap (1000 resamples; "
        f"macro: stratified by subject); ECE over {ECE_BINS} equal-width bins of the top choice's softmax "
        "over the choices' log-likelihoods"
    )


def _top(scores: np.ndarray) -> int | None:
    """The best choice, or None where several share the best score (argmax would pick the first, A)."""
    best = np.flatnonzero(scores == scores.max())
    return int(best[0]) if len(best) == 1 else None


def _prediction(item: dict, ll: np.ndarray) -> dict:
    """One item's row: the best of the choices' log-likelihoods, raw and per byte, and its softmax confidence.

    An exact tie for the best choice predicts none of them and counts as wrong.
    """
    probs = np.exp(ll - ll.max()) / np.exp(ll - ll.max()).sum()
    pred, pred_norm = _top(ll), _top(ll / _byte_lengths(item))
    return {
        "id": item["id"],
        "subject": item["subject"],
        "answer": item["answer"],
        "pred": pred,
        "pred_norm": pred_norm,
        "correct": pred == item["answer"],
        "correct_norm": pred_norm == item["answer"],
        "confidence": float(probs.max()),
        "loglikelihoods": ll.round(4).tolist(),
    }


def evaluate_mcq(
    model,
    tokenizer,
    items: list[dict],
    k_shot: int = 0,
    chat: bool = False,
    batch_size: int = 16,
    fewshot_pool: list[dict] | None = None,
    seed: int = 0,
) -> dict:
    """Score ``items`` (one benchmark) and summarise: acc (and acc_norm), per subject, CIs, calibration.

    Few-shot examples come from ``fewshot_pool`` (e.g. a train or dev file),
    else from the other scored items. The returned dict holds the metrics and,
    under ``predictions``, one row per item (for predictions.jsonl and paired tests).
    """
    if not items:
        raise MedllmError("no benchmark items to score")
    benchmark = items[0]["benchmark"]
    if any(it["benchmark"] != benchmark for it in items):
        raise MedllmError("evaluate_mcq scores one benchmark at a time")
    pool = fewshot_pool if fewshot_pool is not None else items
    started = time.perf_counter()
    per_item = [build_requests(item, select_shots(item, pool, k_shot), chat, tokenizer) for item in items]
    scores = iter(loglikelihoods(model, tokenizer, [r for rs in per_item for r in rs], batch_size, desc=benchmark))
    runtime = time.perf_counter() - started

    predictions = [_prediction(item, np.array([next(scores) for _ in rs])) for item, rs in zip(items, per_item)]
    # acc_norm differs from acc only where the choices differ in length
    report_norm = any(len(set(_byte_lengths(item))) > 1 for item in items)
    subjects = np.array([p["subject"] for p in predictions])
    correct = np.array([p["correct"] for p in predictions], dtype=float)
    metrics = {
        "benchmark": benchmark,
        "protocol": protocol(items[0], k_shot, chat, report_norm),
        "n": len(items),
        "k_shot": k_shot,
        "chat_template": chat,
        "acc": _accuracy_block(correct, subjects, seed),
        "acc_norm": (
            _accuracy_block(np.array([p["correct_norm"] for p in predictions], dtype=float), subjects, seed)
            if report_norm
            else None
        ),
        "calibration": calibration([p["confidence"] for p in predictions], correct),
        "chance": float(np.mean([1 / len(it["choices"]) for it in items])),
        "ties": sum(p["pred"] is None for p in predictions),
        "runtime_s": round(runtime, 2),
        "items_per_s": round(len(items) / runtime, 2),
        "predictions": predictions,
    }
    return metrics


def evaluate_benchmarks(model, tokenizer, config: Config, models: list[str]) -> tuple[dict, dict[str, list[dict]]]:
    """Each benchmark of ``eval.benchmarks`` scored by each of ``models`` (``base``, ``finetuned``) on the same items.

    ``eval.benchmark_max_items`` scores a seeded sample (few-shot examples still
    come from the whole file). With both models, the fine-tuned one is compared
    with the base one on the same items (exact McNemar test, paired bootstrap
    CI of the accuracy difference). Returns the metrics and, per benchmark, one
    prediction row per item.
    """
    cfg = config.eval
    results, rows = {}, {}
    for name in cfg.benchmarks:
        pool = load_benchmark(name, cfg.benchmark_files.get(name))
        items = pool
        if cfg.benchmark_max_items is not None and cfg.benchmark_max_items < len(pool):
            items = [pool[i] for i in sorted(random.Random(0).sample(range(len(pool)), cfg.benchmark_max_items))]
        runs = {}
        for which in models:
            with adapter_mode(model, which):
                runs[which] = evaluate_mcq(
                    model, tokenizer, items, cfg.k_shot, cfg.chat_template, cfg.batch_size, fewshot_pool=pool
                )
        rows[name] = [
            {
                "id": item["id"],
                "subject": item["subject"],
                "answer": item["answer"],
                **{
                    f"{which}_{key}": run["predictions"][i][key]
                    for which, run in runs.items()
                    for key in ("pred", "correct", "confidence")
                },
            }
            for i, item in enumerate(items)
        ]
        results[name] = {which: {k: v for k, v in run.items() if k != "predictions"} for which, run in runs.items()}
        results[name]["sampled_from"] = len(pool)
        if {"base", "finetuned"} <= runs.keys():
            results[name]["finetuned_vs_base"] = paired_comparison(
                [p["correct"] for p in runs["finetuned"]["predictions"]],
                [p["correct"] for p in runs["base"]["predictions"]],
            )
    return results, rows


# ----------------------------------------------------------------------------- report


def _cell(block: dict) -> str:
    ci = block["ci95"]
    return f"{block['value']:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def report_lines(result: dict) -> list[str]:
    """Markdown for one benchmark scored by one or more models on the same items (``evaluate_benchmarks``' value)."""
    runs = {k: v for k, v in result.items() if k in ("base", "finetuned")}
    first = next(iter(runs.values()))
    names = list(runs)
    sample = (
        f" (seeded sample of {result['sampled_from']})" if result.get("sampled_from", first["n"]) > first["n"] else ""
    )
    rows = [
        [subject, block["n"], *(_cell(runs[m]["acc"]["subjects"][subject]) for m in names)]
        for subject, block in first["acc"]["subjects"].items()
    ]
    rows.append(["**micro**", first["n"], *(_cell(runs[m]["acc"]["micro"]) for m in names)])
    rows.append(
        [
            "**macro**",
            f"{first['acc']['macro']['n_subjects']} subjects",
            *(_cell(runs[m]["acc"]["macro"]) for m in names),
        ]
    )
    if first["acc_norm"]:
        rows.append(["acc_norm (micro)", first["n"], *(_cell(runs[m]["acc_norm"]["micro"]) for m in names)])
    rows.append([f"ECE ({ECE_BINS} bins)", first["n"], *(f"{runs[m]['calibration']['ece']:.3f}" for m in names)])
    lines = [
        f"### {first['benchmark']} (n = {first['n']}{sample}, chance {first['chance']:.0%})",
        "",
        f"Protocol: {first['protocol']}.",
        "",
        *table(["subject", "n", *(f"{m} acc" for m in names)], rows),
    ]
    if any(runs[m]["ties"] for m in names):
        counts = ", ".join(f"{m} {runs[m]['ties']}" for m in names)
        lines += ["", f"Items whose top choice is an exact tie (counted wrong): {counts}."]
    test = result.get("finetuned_vs_base")
    if test:
        low, high = test["bootstrap_ci95"] or (float("nan"), float("nan"))
        lines += [
            "",
            f"Fine-tuned vs base, same items: {test['only_first']} right only after fine-tuning, "
            f"{test['only_second']} only before; exact McNemar p = {test['p_value']:.2g}; difference "
            f"{100 * test['difference']:+.1f} points, 95% paired bootstrap CI [{100 * low:+.1f}, {100 * high:+.1f}].",
        ]
    return lines
