"""The re-ranker's inputs: the phenotype top K with evidence, shown in a per-case order, scored back in rank order."""

import numpy as np

from medllm.config import PhenotypeConfig
from medllm.phenotype.explain import Explainer
from medllm.phenotype.rank import case_terms, load_ranker
from medllm.phenotype.rerank import case_vignette, score_case, shown_order, top_candidates

A1, A2, B1 = "HP:0000003", "HP:0000004", "HP:0000006"


def test_the_top_k_carries_each_candidates_evidence_in_ranking_order(tiny_kb):
    ranker = load_ranker(PhenotypeConfig(prefixes=["OMIM:"], ranker="lirical"), tiny_kb)
    terms = case_terms(tiny_kb, [A1, B1], [A2])
    scores = ranker.score(terms.observed, terms.excluded)
    top = top_candidates(ranker, Explainer(tiny_kb), terms, scores, k=2)
    assert top.ids[0] == "OMIM:1" and len(top.ids) == 2 and list(top.scores) == sorted(top.scores, reverse=True)
    assert top.evidence[0].name == "Disease one" and set(top.evidence[0].matched) == {"A1", "B1"}


def test_the_shown_order_is_a_permutation_that_differs_between_cases():
    orders = {tuple(shown_order(f"case {i}", 10, seed=0)) for i in range(20)}
    assert all(sorted(o) == list(range(10)) for o in orders) and len(orders) > 15
    assert shown_order("case 1", 10, 0) == shown_order("case 1", 10, 0) != shown_order("case 1", 10, 1)
    firsts = [shown_order(f"case {i}", 10, 0)[0] for i in range(200)]
    assert np.mean(np.array(firsts) == 0) < 0.25  # the best-ranked is not shown first more than by chance


def test_scores_come_back_in_ranking_order_whatever_order_they_were_shown_in(tiny_kb):
    ranker = load_ranker(PhenotypeConfig(prefixes=["OMIM:", "ORPHA:"], ranker="lirical"), tiny_kb)
    terms = case_terms(tiny_kb, [A1, B1])
    top = top_candidates(ranker, Explainer(tiny_kb), terms, ranker.score(terms.observed, terms.excluded), k=4)
    value = {"Disease one": -1.0, "Disease two": -2.0, "Disease three": -3.0, "Disease nine": -4.0}
    shown = []

    def scorer(messages, answers):
        shown.append([a.strip() for a in answers])
        return [(value[a.strip()], len(a)) for a in answers]

    for seed in range(5):
        scored = score_case(scorer, "A patient presented with A1, B1.", top, seed, gold=0)
        assert list(scored.loglik) == [value[e.name] for e in top.evidence] and scored.gold == 0
    assert len({tuple(s) for s in shown}) > 1  # the seeds showed different orders


def test_the_vignette_is_the_monarch_rendering():
    assert case_vignette(["Seizure"], ["Fever"], "male", 0.5, 0.25) == (
        "A 6-month-old male patient with onset at 0.2 years presented with Seizure. "
        "However, the following features were excluded: Fever."
    )
    assert case_vignette(["Seizure", "Ataxia"]) == "A patient presented with Seizure, Ataxia."
