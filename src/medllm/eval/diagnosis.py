"""Diagnosis accuracy on held-out cases, under every condition of ``eval.conditions``.

The conditions score the same cases:

- ``retrieval``: the recipe's retriever alone (no LLM), its own ranking; BM25,
  MiniLM finding embeddings and their fusion are also scored on the same
  cases, each ranking the whole disease vocabulary;
- ``base_rag``: the base model, prompted with the retrieved candidates;
- ``finetuned_rag``: the fine-tuned model, with the same candidates;
- ``base_closed_book``: the base model without candidates.

With ``eval.calibration``, the two conditions with candidates are also read
a second way: each shown candidate's name is scored as the continuation of
the assistant turn (``1. <name>``) by log-likelihood; the softmax of the
per-token mean log-likelihoods over the candidates is the model's confidence,
scored for top-1 accuracy and calibration (ECE, reliability diagram).

Answers are generated greedily, parsed into a ranked list (numbered lines
before the rationale) and each line is mapped to the disease vocabulary by
:class:`medllm.prompts.DiseaseMatcher`. A case counts for top-k when the true
disease is among the first k distinct diseases named.
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import numpy as np

from medllm.config import Config
from medllm.data.dataset import diagnosis_cases, load_index, load_split
from medllm.errors import MedllmError
from medllm.eval.stats import ECE_BINS, RESAMPLES, SEED, bootstrap_ci, calibration, paired_comparison, wilson_interval
from medllm.generation import (
    ANSWER_PREFIX,
    adapter_mode,
    candidate_confidences,
    candidate_loglikelihoods,
    generate_answers,
)
from medllm.prompts import RATIONALE, DiseaseMatcher, build_messages
from medllm.retrieval import METHODS

log = logging.getLogger(__name__)

TOP_K = (1, 5)
PROTOCOL = (
    "held-out simulated cases ({split} split, seed-separated from training); greedy decoding, "
    "max {max_new_tokens} new tokens, stopped at the rationale (only the ranked list is scored), "
    "the model's chat template; answer lines matched to the "
    "disease vocabulary by normalised name or synonym (whole words, subtype numbers respected); "
    "top-k = true disease among the first k distinct diseases named"
)
INTERVALS = (
    f"ci95: 95% Wilson score interval; bootstrap_ci95: 95% percentile bootstrap over cases, "
    f"{RESAMPLES} resamples, seed {SEED} (null below 2 cases)"
)
CALIBRATION_PROTOCOL = (
    "each shown candidate's name scored as the continuation ' <name>' of the assistant turn opened by the chat "
    "template's generation prompt and '" + ANSWER_PREFIX + "'; score = mean log-likelihood per continuation token "
    "(length-normalised); confidence = softmax of the scores over the shown candidates; prediction = argmax; "
    f"ECE over {ECE_BINS} equal-width confidence bins"
)
PAIRED_PROTOCOL = (
    "same cases, fine-tuned minus base: exact two-sided McNemar test on the discordant "
    "pairs; bootstrap_ci95 of the accuracy difference resamples cases jointly"
)


class LlmCondition(NamedTuple):
    """A condition in which the model answers: with which weights, and whether it is shown the candidates."""

    weights: Literal["base", "finetuned"]
    with_candidates: bool


LLM_CONDITIONS = {
    "base_rag": LlmCondition("base", with_candidates=True),
    "finetuned_rag": LlmCondition("finetuned", with_candidates=True),
    "base_closed_book": LlmCondition("base", with_candidates=False),
}


def top1_calibration(confidence: list[float], correct: list[bool]) -> dict:
    """Top-1 accuracy of a ranking with a confidence per item, with its calibration."""
    hits, n = sum(correct), len(correct)
    return {
        "top1": {
            "accuracy": hits / n,
            "hits": hits,
            "ci95": list(wilson_interval(hits, n)),
            "bootstrap_ci95": bootstrap_ci(correct),
        },
        **calibration(confidence, correct),
    }


def score(rankings: list[list[str]], golds: list[str], sources: list[str]) -> dict:
    """Top-k accuracy overall and per source, each with n, hits and a 95% CI."""

    def block(idx: list[int]) -> dict:
        result = {"n": len(idx)}
        for k in TOP_K:
            hits = sum(golds[i] in rankings[i][:k] for i in idx)
            low, high = wilson_interval(hits, len(idx))
            result[f"top{k}"] = {
                "accuracy": hits / len(idx),
                "hits": hits,
                "ci95": [low, high],
                "bootstrap_ci95": bootstrap_ci([golds[i] in rankings[i][:k] for i in idx]),
            }
        result["answered"] = sum(bool(rankings[i]) for i in idx) / len(idx)
        return result

    everything = list(range(len(golds)))
    out = {"all": block(everything)}
    for source in sorted(set(sources)):
        out[source] = block([i for i in everything if sources[i] == source])
    return out


def load_cases(config: Config):
    """The held-out cases of ``eval.split`` (a seeded sample of ``eval.max_cases``) and the disease index."""
    cfg = config.eval
    cases = diagnosis_cases(load_split(config.data_dir, cfg.split))
    if cfg.max_cases is not None and cfg.max_cases < len(cases):
        cases = cases.shuffle(seed=0).select(range(cfg.max_cases))
    if len(cases) == 0:
        raise MedllmError(f"{config.data_dir}: the {cfg.split} split is empty")
    index, _ = load_index(config)
    return cases, index


def _answer(model, tokenizer, config: Config, cases, condition: str) -> tuple[list[str], list | None]:
    """The model's greedy answers under ``condition`` and, with ``eval.calibration`` and candidates shown,
    each candidate's log-likelihood."""
    cfg = config.eval
    llm = LLM_CONDITIONS[condition]
    conversations = (
        cases["prompt"]
        if llm.with_candidates
        else [build_messages(v, None, config.prompt.differential_size) for v in cases["vignette"]]
    )
    with adapter_mode(model, llm.weights):
        answers = generate_answers(
            model,
            tokenizer,
            conversations,
            cfg.batch_size,
            cfg.max_new_tokens,
            stop_strings=[RATIONALE],
            desc=condition,
        )
        scores = (
            candidate_loglikelihoods(
                model, tokenizer, conversations, cases["candidates"], cfg.batch_size, desc=f"{condition} candidates"
            )
            if cfg.calibration and llm.with_candidates
            else None
        )
    return answers, scores


def _loglik_ranking(predictions: list[dict], condition: str, cases, scores: list, name_to_id: dict) -> dict:
    """Top-1 and calibration of the candidate log-likelihood ranking; each prediction row gets its top and
    confidence."""
    confidence, correct = [], []
    for p, names, lls, gold in zip(predictions, cases["candidates"], scores, cases["disease_id"]):
        probs = candidate_confidences(lls)
        top = name_to_id[names[int(np.argmax(probs))]]
        p[f"{condition}_loglik_top"], p[f"{condition}_confidence"] = top, float(np.max(probs))
        confidence.append(float(np.max(probs)))
        correct.append(top == gold)
    return top1_calibration(confidence, correct)


def _finetuned_vs_base(predictions: list[dict], golds: list[str]) -> dict:
    """Paired comparison of the two conditions with candidates at each k, on the same cases."""
    paired = {}
    for k in TOP_K:
        hit = {
            c: [g in p[f"{c}_ranking"][:k] for g, p in zip(golds, predictions)] for c in ("finetuned_rag", "base_rag")
        }
        paired[f"top{k}"] = paired_comparison(hit["finetuned_rag"], hit["base_rag"])
    return paired


def evaluate_diagnosis(model, tokenizer, config: Config, cases, index) -> tuple[dict, list[dict]]:
    """Every condition of ``eval.conditions`` scored on ``cases`` (from :func:`load_cases`).

    Returns the metrics (protocol, n, top-k per condition and source, the
    retrievers, the paired fine-tuned vs base test, calibration) and one
    prediction row per case (answers, rankings, confidences).
    """
    cfg = config.eval
    golds, sources = cases["disease_id"], cases["source"]
    k_max = max(TOP_K)
    matcher = DiseaseMatcher(index.diseases)
    name_to_id = {d.name: d.id for d in index.diseases}
    results, calibrated = {}, {}
    predictions = [{"id": i, "disease_id": g} for i, g in zip(cases["id"], golds)]
    for condition in cfg.conditions:
        if condition == "retrieval":
            rankings = [r[:k_max] for r in cases["retrieved"]]
        else:
            answers, scores = _answer(model, tokenizer, config, cases, condition)
            rankings = [matcher.rank(a, k_max) for a in answers]
            for p, a in zip(predictions, answers):
                p[f"{condition}_answer"] = a
            if scores is not None:
                calibrated[condition] = _loglik_ranking(predictions, condition, cases, scores, name_to_id)
        for p, r in zip(predictions, rankings):
            p[f"{condition}_ranking"] = r
        results[condition] = score(rankings, golds, sources)
        log.info(
            "%s: top-1 %.3f top-5 %.3f (n=%d)",
            condition,
            results[condition]["all"]["top1"]["accuracy"],
            results[condition]["all"]["top5"]["accuracy"],
            len(golds),
        )
    retrievers = {}
    if "retrieval" in cfg.conditions:
        for method in METHODS:
            hits = index.search_many(list(cases["vignette"]), k_max, method)
            retrievers[method] = score([[d.id for d, _ in h] for h in hits], golds, sources)
    paired = _finetuned_vs_base(predictions, golds) if {"finetuned_rag", "base_rag"} <= results.keys() else {}
    metrics = {
        "protocol": PROTOCOL.format(split=cfg.split, max_new_tokens=cfg.max_new_tokens),
        "n": len(golds),
        "split": cfg.split,
        "vocabulary_size": len(index.diseases),
        "num_candidates": config.prompt.num_candidates,
        "retriever": config.retrieval.method,
        "conditions": results,
        "retrievers": retrievers or None,
        "finetuned_vs_base_rag": paired or None,
        "paired_protocol": PAIRED_PROTOCOL if paired else None,
        "intervals": INTERVALS,
        "calibration": {"protocol": CALIBRATION_PROTOCOL, "conditions": calibrated} if calibrated else None,
    }
    return metrics, predictions
