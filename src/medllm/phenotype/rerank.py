"""The model as a re-ranker of the phenotype ranking's top K: it can only reorder those K, never add others.

For one case the phenotype ranker's top K are shown to the model in :func:`medllm.prompts.rerank_messages`
with each candidate's evidence (the case's findings for, not for and against it), in an order shuffled per
case (seeded by the case), so the position says nothing of the rank. Each candidate is scored by the float32
log-likelihood of :func:`medllm.prompts.rerank_answer` of its name, all K in one batch sharing the prompt's
key/value cache (:func:`medllm.generation.shared_prompt_loglikelihoods`); :mod:`medllm.phenotype.fusion`
combines those with the phenotype scores.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medllm.phenotype.explain import Explainer, candidate_evidence
from medllm.phenotype.fusion import ScoredCase
from medllm.phenotype.rank import CaseTerms, Ranker, ranking
from medllm.prompts import CandidateEvidence, rerank_answer, rerank_messages


@dataclass(frozen=True)
class TopK:
    """The phenotype ranking's best K of one case: positions into ``ranker.rows``, disease ids, scores, evidence."""

    positions: np.ndarray
    ids: tuple[str, ...]
    scores: np.ndarray
    evidence: list[CandidateEvidence]


def top_candidates(
    ranker: Ranker, explainer: Explainer, terms: CaseTerms, scores: np.ndarray, k: int, include: int | None = None
) -> TopK:
    """The ``k`` best of ``scores`` in the ranking's order, each with its evidence from the case's terms.

    ``include``, a position into ``ranker.rows`` (training rows: the true disease), replaces the K-th when it
    is not among the K, so a training prompt always holds its answer.
    """
    kb = ranker.kb
    positions = ranking(ranker, scores)[:k]
    if include is not None and include not in positions:
        positions[-1] = include
    evidence = []
    for j in positions:
        row = int(ranker.rows[j])
        matches = explainer.evidence(row, terms.observed, terms.excluded)
        evidence.append(candidate_evidence(kb, str(kb.disease_names[row]), matches, terms.observed))
    ids = tuple(str(kb.disease_ids[ranker.rows[j]]) for j in positions)
    return TopK(positions, ids, scores[positions], evidence)


def shown_order(vignette: str, k: int, seed: int) -> list[int]:
    """A permutation of the K, fixed by the case's text and ``seed``: another case gets another order."""
    order = list(range(k))
    random.Random(f"{seed}:{vignette}").shuffle(order)
    return order


def case_vignette(present, excluded=(), sex: str | None = None, age: float | None = None, onset=None) -> str:
    """A case as the Monarch benchmark (Reese et al.) writes it for LLMs: sex, onset and age, "presented with
    <labels>", "However, the following features were excluded: <labels>"; eval and serve show the model this."""
    text = "A " + (f"{_age(age)} " if age is not None else "") + (f"{sex} patient" if sex else "patient")
    if onset is not None:
        text += f" with onset at {round(onset, 1):g} years"
    text += f" presented with {', '.join(present)}."
    if excluded:
        text += f" However, the following features were excluded: {', '.join(excluded)}."
    return text


def case_text(case, kb) -> str:
    """:func:`case_vignette` of a phenopacket case (:class:`medllm.data.phenopackets.PhenopacketCase`: labels of the
    ids this release knows): what eval scores and training rows show the model."""
    present, excluded = (
        [str(kb.term_names[t]) for t in kb.resolve(ids, strict=False)[0]] for ids in (case.observed, case.excluded)
    )
    return case_vignette(present, excluded, case.sex, case.age_years, case.onset_years)


def _age(years: float) -> str:
    return f"{round(years * 12)}-month-old" if years < 1 else f"{round(years, 1):g}-year-old"


Scorer = Callable[[list[dict], list[str]], list[tuple[float, int]]]  # (messages, answers) -> (log-lik, tokens)


def model_loglikelihoods(score: Scorer, vignette: str, top: TopK, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood and token count of each candidate's answer, in phenotype order, from one call of ``score``
    (:func:`medllm.generation.shared_prompt_loglikelihoods`: one batched pass)."""
    order = shown_order(vignette, len(top.evidence), seed)
    shown = [top.evidence[i] for i in order]
    scored = score(rerank_messages(vignette, shown), [rerank_answer(c.name) for c in shown])
    loglik, tokens = np.empty(len(order)), np.empty(len(order))
    for i, (total, count) in zip(order, scored):
        loglik[i], tokens[i] = total, count
    return loglik, tokens


def score_case(score: Scorer, vignette: str, top: TopK, seed: int, gold: int | None = None) -> ScoredCase:
    """The case's top K with the model's scores, ready for :class:`medllm.phenotype.fusion.Fusion`."""
    loglik, tokens = model_loglikelihoods(score, vignette, top, seed)
    return ScoredCase(top.scores, loglik, tokens, gold)
