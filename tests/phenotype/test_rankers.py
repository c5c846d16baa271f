"""LIRICAL-style LRs and Phenomizer-style similarities on the tiny ontology, checked against hand-worked values.

Background frequencies (3 OMIM diseases, frequencies propagated up by maximum;
OMIM:3's unstated frequency taken as 1): A1 0.5/3, A 1.4/3, A2 0.9/3, B1 1/3, B 2/3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medllm.phenotype.lirical import LiricalParams, LiricalRanker
from medllm.phenotype.phenomizer import PhenomizerRanker
from medllm.phenotype.rank import case_terms, rank_case, rank_of

A, A1, A2, B, B1 = "HP:0000002", "HP:0000003", "HP:0000004", "HP:0000005", "HP:0000006"


def lr(ranker, observed=(), excluded=()):
    terms = case_terms(ranker.kb, observed, excluded, strict=True)
    return np.exp(ranker.score(terms.observed, terms.excluded))


def test_observed_lr_known_answer(tiny_kb):
    ranker = LiricalRanker(tiny_kb)
    assert ranker.disease_ids.tolist() == ["OMIM:1", "OMIM:2", "OMIM:3"]
    # A1: exact in OMIM:1 (0.5 / (0.5/3)); OMIM:2 shares the ancestor A (0.9 / (1.4/3)); OMIM:3 nothing below the root
    assert lr(ranker, [A1]) == pytest.approx([3.0, 0.9 / (1.4 / 3), 0.01])
    # B1: exact in OMIM:1; OMIM:2 is annotated NOT B1; OMIM:3 has B, B1's parent with one child (1 / 1)
    assert lr(ranker, [B1]) == pytest.approx([3.0, 1e-3, 3.0])
    # A: an ancestor of OMIM:1's A1 (0.5) and OMIM:2's A2 (0.9), over A's background 1.4/3
    assert lr(ranker, [A]) == pytest.approx([0.5 / (1.4 / 3), 0.9 / (1.4 / 3), 0.01])
    # the LRs of several terms multiply
    assert lr(ranker, [A1, B1]) == pytest.approx(lr(ranker, [A1]) * lr(ranker, [B1]))


def test_excluded_lr_known_answer(tiny_kb):
    ranker = LiricalRanker(tiny_kb)
    # A1 excluded: OMIM:1 has it at 0.5 -> 0.5 / (1 - 1/6); the others lack it -> 1 / (1 - 1/6)
    assert lr(ranker, excluded=[A1]) == pytest.approx([0.5 / (5 / 6), 1.2, 1.2])
    # B1 excluded: OMIM:1 has it at 1 -> floor 0.01 / (2/3); OMIM:2 is annotated NOT B1 -> 1000; OMIM:3 lacks it
    assert lr(ranker, excluded=[B1]) == pytest.approx([0.01 / (2 / 3), 1000.0, 1.5])


def test_an_excluded_finding_lowers_a_disease_that_has_it(tiny_kb):
    ranker = LiricalRanker(tiny_kb)
    observed = case_terms(tiny_kb, [A1]).observed
    with_b1 = ranker.score(observed, case_terms(tiny_kb, [], [B1]).excluded)
    without = ranker.score(observed)
    assert with_b1[0] < without[0]  # OMIM:1 has B1
    assert with_b1[2] > without[2]  # OMIM:3 does not
    ranked = rank_case(ranker, [A1], [B1], top=None)
    assert ranked[0].id != "OMIM:1"
    assert rank_case(ranker, [A1], [B1], use_excluded=False)[0].id == "OMIM:1"


def test_default_frequency_is_a_parameter(tiny_kb):
    ranker = LiricalRanker(tiny_kb, params=LiricalParams(default_frequency=0.5))
    # OMIM:3's B now at 0.5: B1 falls back to B with one child, 0.5 over B1's background 1/3
    assert lr(ranker, [B1])[2] == pytest.approx(1.5)


def test_orpha_diseases_on_request(tiny_kb):
    ranker = LiricalRanker(tiny_kb, prefixes=("OMIM:", "ORPHA:"))
    assert ranker.disease_ids.tolist() == ["OMIM:1", "OMIM:2", "OMIM:3", "ORPHA:9"]


def test_phenomizer_resnik_known_answer(tiny_kb):
    ic_a1, ic_a = math.log(3), math.log(1.5)  # A1 annotates 1 of 3 diseases, A (with descendants) 2 of 3
    one_sided = PhenomizerRanker(tiny_kb, mode="query")
    terms = case_terms(tiny_kb, [A1])
    assert one_sided.score(terms.observed) == pytest.approx([ic_a1, ic_a, 0.0])
    symmetric = PhenomizerRanker(tiny_kb, mode="funsimavg")
    # OMIM:1's own terms: A1 matches A1 (log 3), B1 matches only the root (0): mean log(3)/2
    expected = [(ic_a1 + ic_a1 / 2) / 2, (ic_a + ic_a) / 2, 0.0]
    assert symmetric.score(terms.observed) == pytest.approx(expected)


def test_rank_of_counts_ties_against_the_target():
    scores = np.array([1.0, 2.0, 2.0, 0.5])
    assert rank_of(scores, 1) == 2 and rank_of(scores, 2) == 2 and rank_of(scores, 3) == 4


def test_no_match_lr_is_a_parameter(tiny_kb):
    ranker = LiricalRanker(tiny_kb, params=LiricalParams(no_match_lr=0.1))
    observed = lr(ranker, [A1])
    assert np.isfinite(observed).all()
    assert observed[2] == pytest.approx(0.1)


def test_load_ranker_follows_the_config(tiny_kb):
    from medllm.config import PhenotypeConfig
    from medllm.phenotype.rank import load_ranker

    lirical = load_ranker(PhenotypeConfig(ranker="lirical", prefixes=["OMIM:"], prior_weight=0.3), tiny_kb)
    assert isinstance(lirical.base, LiricalRanker) and lirical.params.weight == 0.3  # wrapped with its prior
    assert all(str(i).startswith("OMIM:") for i in tiny_kb.disease_ids[lirical.rows])
    phenomizer = load_ranker(PhenotypeConfig(phenomizer_mode="funsimavg", phenomizer_reverse_weight=0), tiny_kb)
    assert isinstance(phenomizer.base, PhenomizerRanker) and phenomizer.base.mode == "funsimavg"
    assert len(phenomizer.rows) > len(lirical.rows)  # ORPHA entries too by default
    with pytest.raises(ValueError, match="phenomizer_reverse_weight must be 0 with phenomizer_mode funsimavg"):
        PhenotypeConfig(phenomizer_mode="funsimavg")  # the default reverse weight is for query mode
