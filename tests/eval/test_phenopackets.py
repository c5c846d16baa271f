"""Evaluation: every case counts (a diagnosis missing from the knowledge base is a miss), intervals."""

from __future__ import annotations

import math

import pytest

from medllm.data.phenopackets import PhenopacketCase
from medllm.eval.phenopackets import evaluate_cases, summarise
from medllm.eval.stats import wilson_interval
from medllm.phenotype.lirical import LiricalRanker


def case(case_id: str, disease: str, observed, excluded=()) -> PhenopacketCase:
    return PhenopacketCase(case_id, "C", tuple(observed), tuple(excluded), None, None, None, (disease,), "", "f.json")


def test_missing_diseases_count_as_misses(tiny_kb):
    cases = [
        case("a", "OMIM:1", ["HP:0000003", "HP:0000006"]),  # rank 1
        case("b", "OMIM:2", ["HP:0000004"]),  # rank 1
        case("c", "OMIM:3", ["HP:0000006", "HP:0009999"]),  # an unknown term is dropped, not an error
        case("d", "OMIM:404", ["HP:0000003"]),  # not in the knowledge base
    ]
    results = evaluate_cases(LiricalRanker(tiny_kb), cases)
    assert [r.rank for r in results][:2] == [1, 1] and math.isinf(results[3].rank)
    assert results[2].unknown_terms == 1
    summary = summarise(results, n_boot=200)
    assert summary["n"] == 4 and summary["coverage"] == 0.75
    assert summary["top10"] == 0.75  # the miss counts in the denominator
    assert summary["covered"]["top10"] == 1.0
    low, high = summary["bootstrap"]["top1"]
    assert 0 <= low <= summary["top1"] <= high <= 1


def test_wilson_interval():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
