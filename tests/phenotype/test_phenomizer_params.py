"""The Phenomizer corrections (frequency, profile size, excluded findings, reverse and exact match) on the tiny HPO.

ICs over the 3 OMIM diseases: A1, A2, B1 each annotate one (log 3); A and B two (log 1.5).
Frequencies: OMIM:1 A1 0.5, B1 1; OMIM:2 A2 0.9 (NOT B1); OMIM:3 B unstated (``default_frequency`` 0.5).
"""

from __future__ import annotations

import math

import pytest

from conftest import PLAIN_RESNIK
from medllm.errors import MedllmError
from medllm.phenotype.phenomizer import PhenomizerParams, PhenomizerRanker
from medllm.phenotype.rank import case_terms, rank_case

A, A1, A2, B, B1 = "HP:0000002", "HP:0000003", "HP:0000004", "HP:0000005", "HP:0000006"
LOG3, LOG15 = math.log(3), math.log(1.5)


def score(tiny_kb, params, observed, excluded=()):
    ranker = PhenomizerRanker(tiny_kb, mode="query", params=params)
    terms = case_terms(tiny_kb, observed, excluded, strict=True)
    return ranker.score(terms.observed, terms.excluded)


def test_frequency_weight_scales_a_match_by_the_disease_frequency(tiny_kb):
    params = PhenomizerParams(frequency_weight=0.5)
    # A1: OMIM:1 has it at 0.5 -> IC * (0.5 + 0.5 * 0.5); OMIM:2 matches through A, which it has at 0.9
    assert score(tiny_kb, params, [A1]) == pytest.approx([0.75 * LOG3, 0.95 * LOG15, 0.0])
    # B1: OMIM:1 has it at 1 (full IC); OMIM:3 matches through B at the default 0.5
    assert score(tiny_kb, params, [B1]) == pytest.approx([LOG3, 0.0, 0.75 * LOG15])
    # the weight 0 is the plain Resnik score
    assert score(tiny_kb, PhenomizerParams(), [A1]) == pytest.approx([LOG3, LOG15, 0.0])


def test_size_penalty_takes_log_of_the_profile_size(tiny_kb):
    # OMIM:1 has two annotations (log 3 - log 2 = log 1.5), the others one (no penalty)
    assert score(tiny_kb, PhenomizerParams(size_penalty=1.0), [A1]) == pytest.approx([LOG15, LOG15, 0.0])
    assert score(tiny_kb, PhenomizerParams(size_penalty=0.5), [A1])[0] == pytest.approx(LOG3 - 0.5 * math.log(2))


def test_excluded_finding_annotated_not_raises_the_disease(tiny_kb):
    params = PhenomizerParams(excluded_match_gain=1.0)
    # A2 observed; B1 excluded and OMIM:2 is annotated NOT B1: + IC(B1) / 1 observed term
    assert score(tiny_kb, params, [A2], [B1]) == pytest.approx([LOG15, 2 * LOG3, 0.0])
    assert score(tiny_kb, params, [A2, A], [B1])[1] == pytest.approx(LOG3 / 2 + LOG3 / 2 + LOG15 / 2)
    # without the gain the excluded term changes nothing
    assert score(tiny_kb, PhenomizerParams(), [A2], [B1]) == pytest.approx([LOG15, LOG3, 0.0])


def test_excluded_finding_the_disease_has_lowers_it_by_its_frequency(tiny_kb):
    params = PhenomizerParams(excluded_penalty=1.0)
    # B1 excluded: OMIM:1 has it at 1 -> - log 3; OMIM:3 has only B, B1's parent: no penalty
    assert score(tiny_kb, params, [A1], [B1]) == pytest.approx([0.0, LOG15, 0.0])
    # B excluded: OMIM:1 has B (through B1) at 1, OMIM:3 has B at the default 0.5
    assert score(tiny_kb, params, [A1], [B]) == pytest.approx([LOG3 - LOG15, LOG15, -0.5 * LOG15])
    ranker = PhenomizerRanker(tiny_kb, mode="query", params=params)
    assert rank_case(ranker, [A1], [B1])[0].id == "OMIM:2"
    assert rank_case(ranker, [A1], [B1], use_excluded=False)[0].id == "OMIM:1"


def test_reverse_weight_adds_how_much_of_the_disease_the_case_shows(tiny_kb):
    # A1 observed: OMIM:1's A1 matches itself, its B1 nothing; OMIM:2's A2 matches through A; OMIM:3's B nothing
    assert score(tiny_kb, PhenomizerParams(reverse_weight=1.0), [A1]) == pytest.approx(
        [LOG3 + LOG3 / 2, LOG15 + LOG15, 0.0]
    )
    with pytest.raises(MedllmError, match="reverse_weight"):
        PhenomizerRanker(tiny_kb, mode="funsimavg", params=PhenomizerParams(reverse_weight=0.5))


def test_exact_weight_ranks_an_exact_match_above_one_through_an_ancestor(tiny_kb):
    # A1 and B observed. OMIM:2 matches A1 only through A (a sibling's A2); OMIM:3 has B itself. Plain Resnik
    # ties them (log 1.5 / 2 each) and the id breaks the tie; the exact fraction (0 and 1/2) does not
    assert score(tiny_kb, PhenomizerParams(), [A1, B])[1:] == pytest.approx([LOG15 / 2, LOG15 / 2])
    exact = PhenomizerParams(exact_weight=1.0)
    assert score(tiny_kb, exact, [A1, B]) == pytest.approx([(LOG3 + LOG15) / 2 + 1, LOG15 / 2, LOG15 / 2 + 0.5])
    ranked = [r.id for r in rank_case(PhenomizerRanker(tiny_kb, mode="query", params=exact), [A1, B])]
    assert ranked == ["OMIM:1", "OMIM:3", "OMIM:2"]
    assert [r.id for r in rank_case(PhenomizerRanker(tiny_kb, mode="query"), [A1, B])][1] == "OMIM:2"


@pytest.mark.parametrize(
    "field, value",
    [
        ("frequency_weight", 1.5),
        ("default_frequency", 0.0),
        ("size_penalty", -1.0),
        ("excluded_penalty", -0.1),
        ("exact_weight", -1.0),
    ],
)
def test_bad_params_name_the_field(field, value):
    with pytest.raises(MedllmError, match=field):
        PhenomizerParams(**{field: value})


def test_load_ranker_passes_the_configured_corrections(tiny_kb):
    from medllm.config import PhenotypeConfig
    from medllm.phenotype.rank import load_ranker

    cfg = PhenotypeConfig(
        phenomizer_size_penalty=0.7,
        excluded_match_gain=0.4,
        phenomizer_frequency_weight=0.1,
        phenomizer_reverse_weight=0.3,
        phenomizer_exact_weight=2.0,
    )
    ranker = load_ranker(cfg, tiny_kb)
    assert ranker.base.params == PhenomizerParams(
        frequency_weight=0.1, size_penalty=0.7, excluded_match_gain=0.4, reverse_weight=0.3, exact_weight=2.0
    )
    assert load_ranker(PhenotypeConfig(**PLAIN_RESNIK), tiny_kb).base.params == PhenomizerParams()
