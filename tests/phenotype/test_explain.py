"""Term evidence and softmax confidences on the tiny ontology (tests/conftest.py), worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medllm.phenotype.explain import Explainer, confidences

A, A1, A2, B, B1 = "HP:0000002", "HP:0000003", "HP:0000004", "HP:0000005", "HP:0000006"


def matches(kb, disease, observed=(), excluded=()):
    row = kb.disease_ids.tolist().index(disease)
    cols = [kb.term_index(t) for t in observed], [kb.term_index(t) for t in excluded]
    return [
        (str(kb.term_ids[m.case_term]), str(kb.term_ids[m.disease_term]), m.match, m.frequency, m.excluded)
        for m in Explainer(kb).evidence(row, *cols)
    ]


def test_exact_ancestor_and_descendant_matches(tiny_kb):
    assert matches(tiny_kb, "OMIM:1", [A1, A2, B1]) == [(A1, A1, "exact", 0.5, False), (B1, B1, "exact", 1.0, False)]
    assert matches(tiny_kb, "OMIM:3", [B1]) == [(B1, B, "ancestor", None, False)]  # B1 is a kind of B
    assert matches(tiny_kb, "OMIM:2", [A]) == [(A, A2, "descendant", 0.9, False)]  # A2 is a kind of A
    assert matches(tiny_kb, "OMIM:2", [B1]) == []  # annotated NOT B1: no evidence for it


def test_excluded_findings_the_disease_has_are_evidence_against(tiny_kb):
    assert matches(tiny_kb, "OMIM:1", [A1], [B1]) == [(A1, A1, "exact", 0.5, False), (B1, B1, "exact", 1.0, True)]
    assert matches(tiny_kb, "OMIM:1", [A1], [B]) == [(A1, A1, "exact", 0.5, False), (B, B1, "descendant", 1.0, True)]
    # an excluded finding more specific than what the disease has is not against it
    assert matches(tiny_kb, "OMIM:3", [], [B1]) == []


def test_confidences_are_a_softmax_over_every_score():
    scores = np.array([2.0, 1.0, 1.0, 0.0])
    p = confidences(scores, 1.0)
    assert p.sum() == pytest.approx(1) and p[0] / p[1] == pytest.approx(np.e)
    assert confidences(scores, 0.5)[0] / confidences(scores, 0.5)[1] == pytest.approx(np.e**2)
    assert confidences(scores + 100, 1.0) == pytest.approx(p)  # shift-invariant, no overflow


def test_candidate_evidence_sorts_the_findings_for_not_for_and_against(tiny_kb):
    from medllm.phenotype.explain import candidate_evidence

    row = tiny_kb.disease_ids.tolist().index("OMIM:1")
    observed, excluded = [tiny_kb.term_index(A1), tiny_kb.term_index(A2)], [tiny_kb.term_index(B1)]
    found = candidate_evidence(tiny_kb, "One", Explainer(tiny_kb).evidence(row, observed, excluded), observed)
    names = dict(zip(tiny_kb.term_ids.tolist(), tiny_kb.term_names.tolist()))
    assert found.matched == (names[A1],) and found.unexplained == (names[A2],) and found.against == (names[B1],)
