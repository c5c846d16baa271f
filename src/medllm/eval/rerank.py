"""``medllm eval`` on phenopackets, beyond the HPO ids: the case as text, and the model as a re-ranker.

Text: each case is written the way the Monarch benchmark (Reese et al.) prompts LLMs: sex, onset and age,
"presented with <labels>", "However, the following features were excluded: <labels>"; its findings are
recognised back to HPO (:func:`medllm.phenotype.findings.recognise`) and ranked by the served ranker.
Re-rankers: the served ranker's top K (``rerank.top_k``) re-scored by the base and the fine-tuned model
(:mod:`medllm.phenotype.rerank`), fused with a weight and temperature fitted on the split's dev part
(disease-disjoint from the scored part; :mod:`medllm.phenotype.fusion`), the rest after in phenotype order.
The fits go to ``<run>/rerank.json`` for ``medllm serve``. Ranks here follow the ranking's order (ties by
disease id, as served), for the phenotype ranking beside them too, so the paired test compares like with like.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from medllm.config import Config
from medllm.data.phenopackets import PhenopacketCase, dev_halves, load_phenopackets, split_by_disease
from medllm.eval.phenopackets import SHOWN, CaseResult, evaluate_cases, phenopackets_path
from medllm.eval.stats import SEED, calibration, paired_comparison
from medllm.generation import adapter_mode, shared_prompt_loglikelihoods
from medllm.phenotype.explain import Explainer
from medllm.phenotype.findings import case_ids, recognise
from medllm.phenotype.fusion import Fusion, ScoredCase, fit, save_fusions, top1_hits
from medllm.phenotype.kb import KnowledgeBase
from medllm.phenotype.lexicon import lexicon_for
from medllm.phenotype.rank import Ranker, case_scores, case_terms, id_positions, load_ranker, ranking
from medllm.phenotype.rerank import TopK, case_text, score_case, top_candidates

TEXT = "served ranker, the case as text (Monarch rendering) recognised back to HPO"
PHENOTYPE = "served ranker, ranking order (ties by disease id)"
LABELS = {"base": "base model", "finetuned": "fine-tuned model"}
PROTOCOL = (
    "the served ranker's top {k} of each case re-scored by the model: every candidate's evidence shown in a per-case "
    "shuffled order; score = float32 log-likelihood of the answer '<name>\\n' after the prompt, the K in one batch "
    "sharing the prompt's cache; fused = z(phenotype score over the K) + w * log-likelihood (summed or per token), "
    "w chosen on a grid including 0 by top-1 on {fit_n} cases of the dev part (disease-disjoint from the scored "
    "part{overlap}, and from the half of its diseases re-rank training rows come from; ties: smaller w), the "
    "softmax temperature by NLL on the same cases; the rest of the ranking "
    "after the K; the case text: sex, onset, age, 'presented with <labels>', 'However, the following features were "
    "excluded: <labels>'"
)


def text_results(ranker: Ranker, cases: list[PhenopacketCase], use_excluded: bool) -> list[CaseResult]:
    """Ranks when the findings are recognised in :func:`case_text` instead of read from the ids."""
    lexicon = lexicon_for(ranker.kb)
    read = []
    for case in cases:
        observed, excluded = case_ids(recognise(case_text(case, ranker.kb), ranker.kb, lexicon=lexicon))
        read.append(dataclasses.replace(case, observed=tuple(observed), excluded=tuple(excluded)))
    return evaluate_cases(ranker, read, use_excluded)


@dataclass(frozen=True)
class Prepared:
    """A case with its phenotype top K, where its diagnosis sits among them, and its rank in the whole order."""

    case: PhenopacketCase
    text: str
    top: TopK
    gold: int | None
    rank: float  # in the ranking's order; math.inf when the diagnosis is not ranked


def prepare(ranker: Ranker, cases: list[PhenopacketCase], k: int, use_excluded: bool) -> list[Prepared]:
    explainer, kb = Explainer(ranker.kb), ranker.kb
    position = id_positions(ranker)  # merged ids too
    out = []
    for case in cases:
        terms = case_terms(kb, case.observed, case.excluded if use_excluded else ())
        scores = case_scores(ranker, terms, case.age_years, case.sex)
        order = ranking(ranker, scores)
        hits = np.flatnonzero(np.isin(order, [position[d] for d in case.disease_ids if d in position]))
        rank = float(hits[0] + 1) if hits.size else math.inf
        top = top_candidates(ranker, explainer, terms, scores, k)
        out.append(Prepared(case, case_text(case, kb), top, int(hits[0]) if rank <= k else None, rank))
    return out


def model_scores(model, tokenizer, prepared: list[Prepared], seed: int) -> tuple[list[ScoredCase], list[float]]:
    """Each case's top K scored by the model, and the seconds each took."""
    scored, seconds = [], []
    score = partial(shared_prompt_loglikelihoods, model, tokenizer)
    for p in prepared:
        start = time.perf_counter()
        scored.append(score_case(score, p.text, p.top, seed, p.gold))
        seconds.append(time.perf_counter() - start)
    return scored, seconds


def fused_results(fusion: Fusion, prepared: list[Prepared], scored: list[ScoredCase], seconds) -> list[CaseResult]:
    """Ranks under the fused order of the K; a diagnosis beyond the K keeps its phenotype rank."""
    results = []
    for p, s, sec in zip(prepared, scored, seconds):
        order = fusion.order(s)
        rank = float(np.flatnonzero(order == p.gold)[0] + 1) if p.gold is not None else p.rank
        disease = p.case.disease_ids[0] if p.case.disease_ids else ""
        results.append(CaseResult(p.case.id, disease, rank, sec, 0, tuple(p.top.ids[i] for i in order[:SHOWN])))
    return results


def phenotype_results(prepared: list[Prepared]) -> list[CaseResult]:
    """The served ranking's own ranks in its order: the fused ranking at w = 0."""
    return fused_results(Fusion(0.0), prepared, [_phenotype_only(p) for p in prepared], [0.0] * len(prepared))


def _phenotype_only(p: Prepared) -> ScoredCase:
    zeros = np.zeros(len(p.top.ids))
    return ScoredCase(p.top.scores, zeros, zeros + 1, p.gold)


def fitting_cases(config: Config) -> list[PhenopacketCase]:
    """The dev part's fitting half of the configured phenopackets (a seeded sample of ``rerank.fit_max_cases``):
    disease-disjoint from the half re-rank training rows come from (:func:`medllm.data.phenopackets.dev_halves`)."""
    dev = split_by_disease(load_phenopackets(phenopackets_path(config.eval.phenopackets)).cases)["dev"]
    dev = dev_halves(dev)["fit"]
    limit = config.rerank.fit_max_cases
    return random.Random(SEED).sample(dev, limit) if limit is not None and limit < len(dev) else dev


def _confidence(fusion: Fusion, scored: list[ScoredCase], results: list[CaseResult]) -> dict:
    """ECE of the top-1 confidence (softmax over the K) against top-1 hits, over every scored case."""
    return calibration([float(fusion.confidences(s).max()) for s in scored], [r.rank == 1 for r in results])


def _model_block(fusion: Fusion, name: str, dev: list[ScoredCase], scored, results, phenotype) -> dict:
    top1 = [[r.rank == 1 for r in rs] for rs in (results, phenotype)]
    return {
        "method": name,
        "fusion": dataclasses.asdict(fusion),
        "dev_top1_hits": {"fused": top1_hits(fusion, dev), "phenotype": top1_hits(Fusion(0.0), dev)},
        "calibration": _confidence(fusion, scored, results),
        "vs_phenotype_top1": paired_comparison(*top1),
    }


def rerankers(model, tokenizer, config: Config, ranker: Ranker, cases, models) -> tuple[dict, dict]:
    """The phenotype order and each model's fused ranking of ``cases``, fitted on the dev part; the metrics."""
    cfg, use_excluded = config.rerank, config.phenotype.use_excluded
    dev, part = (prepare(ranker, c, cfg.top_k, use_excluded) for c in (fitting_cases(config), cases))
    phenotype = phenotype_results(part)
    results, fits, block = {PHENOTYPE: phenotype}, {}, {}
    for which in models:
        with adapter_mode(model, which):
            dev_scored, _ = model_scores(model, tokenizer, dev, cfg.seed)
            fits[which] = fit(dev_scored)
            scored, seconds = model_scores(model, tokenizer, part, cfg.seed)
        name = f"{LABELS[which]} re-ranking the top {cfg.top_k} (w = {fits[which].weight:g})"
        results[name] = fused_results(fits[which], part, scored, seconds)
        block[which] = _model_block(fits[which], name, dev_scored, scored, results[name], phenotype)
    overlap = ": NOT disjoint, the whole set is scored" if config.eval.phenopackets_part == "all" else ""
    protocol = PROTOCOL.format(k=cfg.top_k, fit_n=len(dev), overlap=overlap)
    adapter = str(config.run.adapter) if "finetuned" in models else None
    save_fusions(config.run.rerank, fits, adapter=adapter, model=config.model.name, protocol=protocol, dev_n=len(dev))
    return results, {"protocol": protocol, "top_k": cfg.top_k, "fit_n": len(dev), "models": block}


def evaluate_rerank(model, tokenizer, config: Config, kb: KnowledgeBase, cases, models) -> tuple[dict, dict | None]:
    """Per-case results by method name (the case as text; with a model, the phenotype order and each model
    fused) and the re-rank metrics (None without a model or with ``rerank.eval`` off)."""
    ranker = load_ranker(config.phenotype, kb)
    results = {TEXT: text_results(ranker, cases, config.phenotype.use_excluded)}
    if model is None or not models or not config.rerank.eval:
        return results, None
    fused, metrics = rerankers(model, tokenizer, config, ranker, cases, models)
    return {**results, **fused}, metrics
