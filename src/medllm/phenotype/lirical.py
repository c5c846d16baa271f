"""LIRICAL-style phenotype likelihood ratios (Robinson et al., AJHG 2020), vectorised over all diseases.

For an observed term ``q`` and disease ``D``, ``LR = P(q | D) / P(q | not D)``.
The background ``P(q | not D)`` is the mean over the ranked diseases of the
frequency with which each has ``q`` or a descendant (floored at 1e-4). The
numerator follows LIRICAL's ``PhenotypeLikelihoodRatio`` rules, first that applies:

1. ``D`` is annotated ``NOT`` to ``q`` or an ancestor: LR = 1/1000.
2. ``q`` annotates ``D``: its frequency.
3. ``q`` is an ancestor of terms annotating ``D``: their largest frequency.
4. ``q`` is a direct child of a term ``a`` annotating ``D``: ``freq(a) / #children(a)``
   (at least the "false-positive" probability of a finding this common).
5. ``q`` and a term of ``D`` share an ancestor below Phenotypic abnormality:
   the closest such ancestor's ``P(a | D) / P(a | not D)`` (at least ``no_match_lr``).
6. Otherwise ``no_match_lr`` (0.01).

An excluded term ``x``: ``max(false_negative, 1 - P(x | D)) / (1 - P(x | not D))``,
``1 / (1 - P(x | not D))`` when ``D`` has neither ``x`` nor a descendant, and
``excluded_match_lr`` when ``D`` is annotated ``NOT`` to ``x``. A case's score
is the sum of log LRs; the diseases' pretest probabilities are taken as equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, KnowledgeBase
from medllm.phenotype.matrices import ancestor_levels, column, pattern, propagate_max, row, select_diseases


@dataclass(frozen=True)
class LiricalParams:
    default_frequency: float = 1.0  # for annotations without a frequency (LIRICAL: 1.0)
    no_match_lr: float = 0.01
    absent_in_disease_lr: float = 1e-3
    excluded_match_lr: float = 1000.0
    false_negative: float = 0.01
    background_floor: float = 1e-4


class LiricalRanker:
    name = "lirical"

    def __init__(self, kb: KnowledgeBase, prefixes: tuple[str, ...] | None = ("OMIM:",), params=LiricalParams()):
        self.kb, self.params = kb, params
        self.rows = select_diseases(kb, prefixes)
        freq = kb.frequency[self.rows].tocsr()
        freq.data = np.where(np.isnan(freq.data), params.default_frequency, freq.data)
        propagated = propagate_max(freq, kb.closure)
        self.raw_background = np.asarray(propagated.sum(axis=0)).ravel() / len(self.rows)
        self.background = np.maximum(self.raw_background, params.background_floor)
        self.freq, self.propagated = freq.tocsc(), propagated.tocsc()
        self.absent = pattern(kb.absent[self.rows]).tocsc()
        self.n_children = np.asarray(kb.parents.sum(axis=0)).ravel()
        self.scorable = kb.subtree(PHENOTYPIC_ABNORMALITY)
        self._levels: dict[int, list[np.ndarray]] = {}

    @property
    def disease_ids(self) -> np.ndarray:
        return self.kb.disease_ids[self.rows]

    def _false_positive(self, term: int) -> float:
        """LIRICAL's ``noCommonOrganProbability``: a penalty of 1:500 for the rarest findings to 1:10 for common
        ones, times the finding's background frequency (its constant 0.01 is fixed here, not ``no_match_lr``)."""
        f = self.raw_background[term]
        penalty = 0.002 + (f - 0.01) * (0.10 - 0.002) / (0.10 - 0.01)
        return max(penalty * f, 0.0)

    def _common_ancestor(self, term: int, lr: np.ndarray) -> None:
        """Rule 5 in place for the diseases still without an LR."""
        levels = self._levels.get(term)
        if levels is None:
            levels = self._levels[term] = ancestor_levels(self.kb, term)
        if not levels:
            return
        flat = np.concatenate(levels)
        block = self.propagated[:, flat].toarray() / self.background[flat]
        start = 0
        for level in levels:
            open_ = np.isnan(lr)
            if not open_.any():
                return
            best = block[:, start : start + len(level)].max(axis=1)
            start += len(level)
            hit = open_ & (best > 0)
            lr[hit] = np.maximum(best[hit], self.params.no_match_lr)

    def observed_lr(self, term: int) -> np.ndarray:
        """LR of an observed term for every ranked disease."""
        p, bg = self.params, self.background[term]
        exact, prop = column(self.freq, term), column(self.propagated, term)
        lr = np.where(exact > 0, exact / bg, np.where(prop > 0, prop / bg, np.nan))
        parents = row(self.kb.parents, term)
        if len(parents) and np.isnan(lr).any():
            share = (self.freq[:, parents].toarray() / self.n_children[parents]).max(axis=1)
            hit = np.isnan(lr) & (share > 0)
            lr[hit] = np.maximum(share[hit], self._false_positive(term)) / bg
        if np.isnan(lr).any():
            self._common_ancestor(term, lr)
        lr[np.isnan(lr)] = p.no_match_lr
        ancestors = row(self.kb.closure, term)
        lr[self.absent[:, ancestors].getnnz(axis=1) > 0] = p.absent_in_disease_lr
        return lr

    def excluded_lr(self, term: int) -> np.ndarray:
        """LR of an excluded (explicitly absent) term for every ranked disease."""
        bg = self.background[term]
        if bg > 0.99:
            return np.ones(len(self.rows))
        prop = column(self.propagated, term)
        lr = np.where(prop > 0, np.maximum(self.params.false_negative, 1 - prop), 1.0) / (1 - bg)
        lr[column(self.absent, term) > 0] = self.params.excluded_match_lr
        return lr

    def score(self, observed: np.ndarray, excluded: np.ndarray = ()) -> np.ndarray:
        """Sum of log LRs per ranked disease; terms outside Phenotypic abnormality are ignored."""
        total = np.zeros(len(self.rows))
        for term in observed:
            if self.scorable[term]:
                total += np.log(self.observed_lr(int(term)))
        for term in excluded:
            if self.scorable[term]:
                total += np.log(self.excluded_lr(int(term)))
        return total
