"""Phenomizer-style semantic similarity (Köhler et al., AJHG 2009): Resnik similarity, best-match averages.

``IC(t) = -log(fraction of ranked diseases annotated to t or a descendant)``;
``sim(q, a) = IC`` of their most informative common ancestor. ``query`` mode
scores a disease by the mean over the case's terms of the best match among
the disease's terms (Phenomizer's asymmetric score); ``funsimavg`` averages that
with the mean over the disease's terms of their best match in the case
(pyhpo's ``funSimAvg``). Excluded terms are not used.
"""

from __future__ import annotations

import numpy as np

from medllm.errors import MedllmError
from medllm.phenotype.kb import KnowledgeBase
from medllm.phenotype.matrices import pattern, row, select_diseases

MODES = ("query", "funsimavg")


class PhenomizerRanker:
    name = "phenomizer"

    def __init__(self, kb: KnowledgeBase, prefixes: tuple[str, ...] | None = ("OMIM:",), mode: str = "funsimavg"):
        if mode not in MODES:
            raise MedllmError(f"phenomizer mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.kb, self.mode = kb, mode
        self.rows = select_diseases(kb, prefixes)
        direct = pattern(kb.frequency[self.rows])
        induced = pattern(direct @ kb.closure)
        counts = np.asarray(induced.sum(axis=0)).ravel()
        with np.errstate(divide="ignore"):
            self.ic = np.where(counts > 0, -np.log(counts / len(self.rows)), 0.0)
        self.induced_ic = induced.multiply(self.ic).tocsc()
        self.direct = direct
        self.n_direct = np.maximum(np.asarray(direct.sum(axis=1)).ravel(), 1)
        self.closure_csc = kb.closure.tocsc()

    @property
    def disease_ids(self) -> np.ndarray:
        return self.kb.disease_ids[self.rows]

    def _case_to_disease(self, observed: np.ndarray, union: np.ndarray) -> np.ndarray:
        """Mean over case terms of the best Resnik match among each disease's terms."""
        block = self.induced_ic[:, union].toarray()
        where = {t: i for i, t in enumerate(union)}
        total = np.zeros(len(self.rows))
        for term in observed:
            cols = [where[a] for a in row(self.kb.closure, term)]
            total += block[:, cols].max(axis=1)
        return total / len(observed)

    def _disease_to_case(self, union: np.ndarray) -> np.ndarray:
        """Mean over each disease's terms of their best Resnik match in the case."""
        best = self.closure_csc[:, union].multiply(self.ic[union]).tocsr().max(axis=1)
        best = np.asarray(best.toarray()).ravel()
        return np.asarray(self.direct @ best).ravel() / self.n_direct

    def score(self, observed: np.ndarray, excluded: np.ndarray = ()) -> np.ndarray:
        """Similarity of the case's observed terms to every ranked disease (``excluded`` is ignored)."""
        observed = np.asarray(observed, dtype=np.int64)
        if not len(observed):
            return np.zeros(len(self.rows))
        union = np.unique(self.kb.closure[observed].indices)
        forward = self._case_to_disease(observed, union)
        if self.mode == "query":
            return forward
        return (forward + self._disease_to_case(union)) / 2
