"""The common-disease vignettes: a well-formed packaged set, and one ranked through the patient-fields path."""

import json

import pytest
import yaml

from conftest import write_hpo
from medllm.config import PhenotypeConfig
from medllm.errors import MedllmError
from medllm.eval.vignettes import load_vignettes, rank_vignette, summarise_vignettes
from medllm.phenotype.kb import build_knowledge_base
from medllm.phenotype.lexicon import lexicon_for
from medllm.phenotype.rank import id_positions, load_ranker


def test_the_packaged_vignettes_are_many_distinct_and_a_third_held_out():
    import simple_icd_10_cm as icd

    rows = load_vignettes()
    assert len(rows) >= 60 and len({r["id"] for r in rows}) == len(rows)
    assert all(icd.is_valid_item(r["diagnosis"]["icd10"]) for r in rows)
    held_out = sum(r["split"] == "held_out" for r in rows)
    assert abs(held_out - len(rows) / 3) <= 1


def test_a_malformed_vignette_is_named_by_line_and_field(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"id": "x", "text": "t", "sex": "male", "symptoms": [], "note": "", "split": "x"}))
    with pytest.raises(MedllmError, match=r"v\.jsonl:1: field 'diagnosis'"):
        load_vignettes(path)


def test_a_vignette_is_a_hit_when_its_icd10_row_ranks_high(tmp_path):
    entry = {"name": "Acute myocardial infarction", "icd10": "I21.9", "prevalence": "common",
             "findings": {"A2": 0.9, "B1": 0.9}, "source": "a test"}  # fmt: skip
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"diseases": [entry]}))
    kb = build_knowledge_base(write_hpo(tmp_path / "hpo"), common=tmp_path / "t.yaml")
    cfg = PhenotypeConfig()
    ranker = load_ranker(cfg, kb)
    vignette = {"id": "mi", "split": "tuning", "age": 60, "sex": "male", "symptoms": ["A2", "B1"], "note": "",
                "diagnosis": {"icd10": "I21.9"}}  # fmt: skip
    hit = rank_vignette(ranker, cfg, lexicon_for(kb), vignette, id_positions(ranker))
    assert hit.rank == 1 and hit.top[0] == "ICD10:I21.9"
    unread = rank_vignette(ranker, cfg, lexicon_for(kb), {**vignette, "symptoms": ["odd"]}, id_positions(ranker))
    assert unread.rank == float("inf")  # nothing recognised: a miss
    summary = summarise_vignettes([hit, unread])
    assert summary["tuning"] == {"n": 2, "top1": 0.5, "top5": 0.5}
