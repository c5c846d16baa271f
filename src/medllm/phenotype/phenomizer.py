"""Phenomizer-style semantic similarity (Köhler et al., AJHG 2009): Resnik similarity, best-match averages.

``IC(t) = -log(fraction of ranked diseases annotated to t or a descendant)``;
``sim(q, a) = IC`` of their most informative common ancestor. ``query`` mode
scores a disease by the mean over the case's terms of the best match among
the disease's terms (Phenomizer's asymmetric score); ``funsimavg`` averages that
with the mean over the disease's terms of their best match in the case
(pyhpo's ``funSimAvg``).

:class:`PhenomizerParams` adds optional corrections (all off by default,
which is the plain Resnik score): a match through a common ancestor ``c`` is
weighted by how often the disease has ``c`` (``1 - w + w * f``, ``f`` the
largest frequency among the disease's terms at or below ``c``), so a finding
seen in 5% of patients explains less than an obligate one; diseases lose
``size_penalty * log(#annotations)``, since a long profile matches any case's
terms by chance more often; and each excluded term ``x`` moves a disease by
``IC(x) / #observed``: up by ``excluded_match_gain`` when the disease is
annotated ``NOT x``, down by ``excluded_penalty * f(x)`` when it has ``x``.
Two more weigh what the one-sided query score misses: ``reverse_weight`` times
the disease-to-case best-match average (how much of the disease the case
shows; ``query`` mode only, ``funsimavg`` has it built in), and
``exact_weight`` times the fraction of the case's terms that the disease has
at or below them (a finding matched exactly, not only through an ancestor:
Resnik scores a sibling subtype's near-miss almost as high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medllm.errors import MedllmError
from medllm.phenotype.kb import KnowledgeBase
from medllm.phenotype.matrices import column, pattern, propagate_max, row, select_diseases

MODES = ("query", "funsimavg")


@dataclass(frozen=True)
class PhenomizerParams:
    frequency_weight: float = 0.0  # w: a match counts IC * (1 - w + w * frequency); 0 ignores frequencies
    default_frequency: float = 0.5  # for annotations without a frequency, when frequency_weight > 0
    size_penalty: float = 0.0  # subtracted times log(number of the disease's phenotype annotations)
    excluded_match_gain: float = 0.0  # per excluded term the disease is annotated NOT to, times IC / #observed
    excluded_penalty: float = 0.0  # per excluded term the disease has, times IC * frequency / #observed
    reverse_weight: float = 0.0  # times the mean over the disease's terms of their best match in the case
    exact_weight: float = 0.0  # times the fraction of the case's terms the disease has at or below

    def __post_init__(self) -> None:
        if not 0.0 <= self.frequency_weight <= 1.0:
            raise MedllmError(f"phenomizer frequency_weight must be in [0, 1], got {self.frequency_weight}")
        if not 0.0 < self.default_frequency <= 1.0:
            raise MedllmError(f"phenomizer default_frequency must be in (0, 1], got {self.default_frequency}")
        for name in ("size_penalty", "excluded_match_gain", "excluded_penalty", "reverse_weight", "exact_weight"):
            if getattr(self, name) < 0:
                raise MedllmError(f"phenomizer {name} must be >= 0, got {getattr(self, name)}")


class PhenomizerRanker:
    name = "phenomizer"

    def __init__(
        self,
        kb: KnowledgeBase,
        prefixes: tuple[str, ...] | None = ("OMIM:",),
        mode: str = "funsimavg",
        params: PhenomizerParams = PhenomizerParams(),
    ):
        if mode not in MODES:
            raise MedllmError(f"phenomizer mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "funsimavg" and params.reverse_weight:
            raise MedllmError("phenomizer reverse_weight is for query mode: funsimavg already averages both ways")
        self.kb, self.mode, self.params = kb, mode, params
        self.rows = select_diseases(kb, prefixes)
        freq = kb.frequency[self.rows].tocsr()
        freq.data = np.where(np.isnan(freq.data), params.default_frequency, freq.data)
        direct = pattern(freq)
        induced = propagate_max(freq, kb.closure)  # [d, t]: the largest frequency of d's terms at or below t
        counts = np.asarray(induced.getnnz(axis=0)).ravel()
        with np.errstate(divide="ignore"):
            self.ic = np.where(counts > 0, -np.log(counts / len(self.rows)), 0.0)
        self.propagated = induced.tocsc()
        weight = induced.copy()
        weight.data = 1.0 - params.frequency_weight + params.frequency_weight * weight.data
        self.induced_ic = weight.multiply(self.ic).tocsc()
        self.direct = direct
        self.n_direct = np.maximum(np.asarray(direct.sum(axis=1)).ravel(), 1)
        self.prior = -params.size_penalty * np.log(self.n_direct)
        self.absent = pattern(kb.absent[self.rows]).tocsc()
        self.closure_csc = kb.closure.tocsc()

    @property
    def disease_ids(self) -> np.ndarray:
        return self.kb.disease_ids[self.rows]

    def _case_to_disease(self, observed: np.ndarray, union: np.ndarray) -> np.ndarray:
        """Mean over case terms of the best (frequency-weighted) Resnik match among each disease's terms."""
        block = self.induced_ic[:, union].toarray()
        where = {t: i for i, t in enumerate(union)}
        total = np.zeros(len(self.rows))
        for term in observed:
            cols = [where[a] for a in row(self.kb.closure, term)]
            total += block[:, cols].max(axis=1)
        return total / len(observed)

    def disease_to_case(self, observed: np.ndarray, union: np.ndarray | None = None) -> np.ndarray:
        """Mean over each disease's terms of their best Resnik match in the case (``union``: the case's terms and
        their ancestors, when the caller has them)."""
        union = np.unique(self.kb.closure[observed].indices) if union is None else union
        best = self.closure_csc[:, union].multiply(self.ic[union]).tocsr().max(axis=1)
        best = np.asarray(best.toarray()).ravel()
        return np.asarray(self.direct @ best).ravel() / self.n_direct

    def exact_fraction(self, observed: np.ndarray) -> np.ndarray:
        """Fraction of the case's terms each disease has at or below them (matched without an ancestor)."""
        hits = sum((column(self.propagated, term) > 0).astype(float) for term in observed)
        return hits / len(observed)

    def excluded_shift(self, excluded: np.ndarray, n_observed: int) -> np.ndarray:
        """What the excluded terms add to each disease's score (zero unless the params weigh them)."""
        p, shift = self.params, np.zeros(len(self.rows))
        for term in excluded:
            if p.excluded_match_gain:
                shift += p.excluded_match_gain * self.ic[term] * (column(self.absent, term) > 0)
            if p.excluded_penalty:
                shift -= p.excluded_penalty * self.ic[term] * column(self.propagated, term)
        return shift / max(n_observed, 1)

    def score(self, observed: np.ndarray, excluded: np.ndarray = ()) -> np.ndarray:
        """Similarity of the case's terms to every ranked disease, with the corrections the params switch on."""
        observed = np.asarray(observed, dtype=np.int64)
        if not len(observed):
            return np.zeros(len(self.rows))
        union = np.unique(self.kb.closure[observed].indices)
        total = self._case_to_disease(observed, union)
        if self.mode == "funsimavg":
            total = (total + self.disease_to_case(observed, union)) / 2
        elif self.params.reverse_weight:
            total = total + self.params.reverse_weight * self.disease_to_case(observed, union)
        if self.params.exact_weight:
            total = total + self.params.exact_weight * self.exact_fraction(observed)
        return total + self.prior + self.excluded_shift(np.asarray(excluded, dtype=np.int64), len(observed))
