"""Rank every disease of a knowledge base for one case's HPO terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from medllm.config import PhenotypeConfig
from medllm.phenotype.kb import KnowledgeBase, load_knowledge_base


class Ranker(Protocol):
    kb: KnowledgeBase
    rows: np.ndarray

    def score(self, observed: np.ndarray, excluded: np.ndarray = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class RankedDisease:
    rank: int
    id: str
    name: str
    score: float


@dataclass(frozen=True)
class CaseTerms:
    observed: np.ndarray
    excluded: np.ndarray
    unknown: tuple[str, ...]  # ids of the case not in this HPO release (dropped)


def case_terms(kb: KnowledgeBase, observed, excluded=(), strict: bool = False) -> CaseTerms:
    """Term columns of a case; ids unknown to this release are dropped (or, with ``strict``, an error)."""
    obs, unknown_obs = kb.resolve(observed, strict=strict)
    exc, unknown_exc = kb.resolve(excluded, strict=strict)
    exc = np.setdiff1d(exc, obs)  # a term both observed and excluded counts as observed
    return CaseTerms(obs, exc, tuple(unknown_obs + unknown_exc))


def ranking(ranker: Ranker, scores: np.ndarray) -> np.ndarray:
    """Row positions (into ``ranker.rows``) best first; ties broken by disease id for determinism."""
    ids = ranker.kb.disease_ids[ranker.rows]
    return np.lexsort((ids, -scores))


def id_positions(ranker: Ranker) -> dict[str, int]:
    """Every disease id of the ranked diseases (merged ids too) → its position in ``ranker.rows``."""
    at = {row: i for i, row in enumerate(ranker.rows.tolist())}
    return {d: at[row] for d, row in ranker.kb.id_rows().items() if row in at}


def rank_of(scores: np.ndarray, target: int) -> int:
    """1-based rank of position ``target`` with ties counted pessimistically (all tied diseases ahead)."""
    return int(np.sum(scores >= scores[target]))


def case_scores(ranker: Ranker, terms: CaseTerms, age: float | None = None, sex: str | None = None) -> np.ndarray:
    """Every ranked disease's score for the case; with a :class:`PriorRanker`, its pretest prior for age and sex."""
    from medllm.phenotype.pretest import PriorRanker

    if isinstance(ranker, PriorRanker):
        return ranker.score(terms.observed, terms.excluded, age=age, sex=sex)
    return ranker.score(terms.observed, terms.excluded)


def rank_case(
    ranker: Ranker,
    observed,
    excluded=(),
    use_excluded: bool = True,
    top: int | None = 10,
    strict: bool = False,
    age: float | None = None,
    sex: str | None = None,
) -> list[RankedDisease]:
    """The ``top`` diseases (all when None) for one case's HPO ids (and age and sex, for a prior), best first."""
    terms = case_terms(ranker.kb, observed, excluded if use_excluded else (), strict=strict)
    scores = case_scores(ranker, terms, age, sex)
    order = ranking(ranker, scores)[: top or None]
    kb = ranker.kb
    return [
        RankedDisease(
            i + 1, str(kb.disease_ids[ranker.rows[j]]), str(kb.disease_names[ranker.rows[j]]), float(scores[j])
        )
        for i, j in enumerate(order)
    ]


def load_ranker(cfg: PhenotypeConfig, kb: KnowledgeBase | None = None) -> Ranker:
    """The configured ranker over the (cached) knowledge base, with the configured pretest prior."""
    from medllm.phenotype.lirical import LiricalRanker
    from medllm.phenotype.phenomizer import PhenomizerRanker
    from medllm.phenotype.pretest import PriorParams, PriorRanker

    kb = kb if kb is not None else load_knowledge_base()
    prefixes = tuple(cfg.prefixes)
    if cfg.ranker == "lirical":
        base = LiricalRanker(kb, prefixes)
    else:
        base = PhenomizerRanker(kb, prefixes, mode=cfg.phenomizer_mode, params=phenomizer_params(cfg))
    prior = PriorParams(cfg.prior_weight, cfg.prior_age_mismatch, cfg.prior_sex_mismatch)
    return PriorRanker(base, prior)


def phenomizer_params(cfg: PhenotypeConfig):
    """The Phenomizer corrections the config asks for."""
    from medllm.phenotype.phenomizer import PhenomizerParams

    return PhenomizerParams(
        frequency_weight=cfg.phenomizer_frequency_weight,
        size_penalty=cfg.phenomizer_size_penalty,
        excluded_match_gain=cfg.excluded_match_gain,
        excluded_penalty=cfg.excluded_penalty,
        reverse_weight=cfg.phenomizer_reverse_weight,
        exact_weight=cfg.phenomizer_exact_weight,
    )
