"""The vectorised rankers against direct loops over one disease's annotations, on the full HPO (slow: ~15 s).

The loops follow the rules as written (LIRICAL's ``PhenotypeLikelihoodRatio``;
Resnik similarity with best-match averages) term by term, so they check the
sparse-matrix shortcuts (max-propagation, ancestor levels, column slices).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medllm.phenotype import LiricalRanker, PhenomizerRanker, load_knowledge_base
from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, ROOT
from medllm.phenotype.lirical import LiricalParams

pytestmark = pytest.mark.slow
CASE = ["HP:0001263", "HP:0001924", "HP:0002470", "HP:0000639", "HP:0004322", "HP:0001250", "HP:0012443"]
EXCLUDED = ["HP:0000252", "HP:0001263", "HP:0000365"]
DISEASES = ["OMIM:301310", "OMIM:300352", "OMIM:612164", "OMIM:254800", "OMIM:147920"]


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


def ancestors(kb, t: int) -> set[int]:
    return set(kb.closure[t].indices.tolist())


def annotations(kb, ranker, disease: str) -> tuple[dict[int, float], set[int]]:
    d = int(np.flatnonzero(kb.disease_ids == disease)[0])
    freq = kb.frequency[d]
    values = [ranker.params.default_frequency if math.isnan(v) else v for v in freq.data]
    return dict(zip(freq.indices.tolist(), values)), set(kb.absent[d].indices.tolist())


def propagated(kb, anns: dict[int, float], t: int) -> float:
    return max((f for a, f in anns.items() if t in ancestors(kb, a)), default=0.0)


def observed_lr(kb, ranker, anns, absent, q: int) -> float:
    bg, p = ranker.background, ranker.params
    if absent & ancestors(kb, q):
        return p.absent_in_disease_lr
    if q in anns:
        return anns[q] / bg[q]
    if (f := propagated(kb, anns, q)) > 0:
        return f / bg[q]
    parents = kb.parents[q].indices.tolist()
    shares = [anns[a] / len(kb.parents[:, a].indices) for a in parents if a in anns]
    if shares:
        return max(max(shares), ranker._false_positive(q)) / bg[q]
    stop, seen, level = {kb.term_index(ROOT), kb.term_index(PHENOTYPIC_ABNORMALITY)}, {q}, [q]
    while level:
        level = sorted({a for t in level for a in kb.parents[t].indices.tolist()} - seen)
        seen |= set(level)
        ratios = [propagated(kb, anns, t) / bg[t] for t in level if t not in stop]
        if any(r > 0 for r in ratios):
            return max(p.no_match_lr, max(ratios))
    return p.no_match_lr


def excluded_lr(kb, ranker, anns, absent, x: int) -> float:
    bg = ranker.background[x]
    if x in absent:
        return ranker.params.excluded_match_lr
    f = propagated(kb, anns, x)
    return (max(ranker.params.false_negative, 1 - f) if f > 0 else 1.0) / (1 - bg)


@pytest.mark.parametrize("params", [LiricalParams(), LiricalParams(default_frequency=0.5, no_match_lr=0.1)])
def test_lirical_matches_the_rules(kb, params):
    ranker = LiricalRanker(kb, params=params)
    observed, _ = kb.resolve(CASE)
    excluded, _ = kb.resolve(EXCLUDED)
    position = {d: i for i, d in enumerate(ranker.disease_ids.tolist())}
    for disease in DISEASES:
        anns, absent = annotations(kb, ranker, disease)
        for q in observed:
            assert ranker.observed_lr(int(q))[position[disease]] == pytest.approx(
                observed_lr(kb, ranker, anns, absent, int(q)), rel=1e-12
            ), (disease, kb.term_ids[q])
        for x in excluded:
            assert ranker.excluded_lr(int(x))[position[disease]] == pytest.approx(
                excluded_lr(kb, ranker, anns, absent, int(x)), rel=1e-12
            ), (disease, kb.term_ids[x])


def test_background_is_the_mean_propagated_frequency(kb):
    ranker = LiricalRanker(kb)
    freq = kb.frequency[ranker.rows].tocsr()
    for term in ("HP:0001924", "HP:0001250", "HP:0000707"):
        below = set(np.flatnonzero(kb.subtree(term)).tolist())
        total = 0.0
        for d in range(freq.shape[0]):
            values = [1.0 if math.isnan(v) else v for a, v in zip(*_row(freq, d)) if a in below]
            total += max(values, default=0.0)
        assert ranker.raw_background[kb.term_index(term)] == pytest.approx(total / freq.shape[0], rel=1e-12)


def _row(matrix, d: int):
    start, end = matrix.indptr[d], matrix.indptr[d + 1]
    return matrix.indices[start:end].tolist(), matrix.data[start:end].tolist()


def test_phenomizer_matches_pairwise_resnik(kb):
    query, symmetric = PhenomizerRanker(kb, mode="query"), PhenomizerRanker(kb, mode="funsimavg")
    observed, _ = kb.resolve(CASE)
    ic = query.ic
    position = {d: i for i, d in enumerate(query.disease_ids.tolist())}

    def sim(a: int, b: int) -> float:
        return max(ic[t] for t in ancestors(kb, a) & ancestors(kb, b))

    for disease in DISEASES:
        terms = kb.frequency[int(np.flatnonzero(kb.disease_ids == disease)[0])].indices.tolist()
        forward = np.mean([max(sim(q, a) for a in terms) for q in observed])
        backward = np.mean([max(sim(q, a) for q in observed) for a in terms])
        assert query.score(observed)[position[disease]] == pytest.approx(forward, rel=1e-12)
        assert symmetric.score(observed)[position[disease]] == pytest.approx((forward + backward) / 2, rel=1e-12)
