"""The matrix knowledge base built from a tiny hp.obo / phenotype.hpoa pair, and its cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medllm.errors import MedllmError
from medllm.phenotype.annotations import parse_frequency
from medllm.phenotype.kb import build_knowledge_base, load_knowledge_base


def test_terms_diseases_and_annotations(tiny_kb):
    kb = tiny_kb
    assert kb.release == "2099-01-01"
    assert kb.n_terms == 7  # the obsolete term is not a column
    assert kb.disease_ids.tolist() == ["OMIM:1", "OMIM:2", "OMIM:3", "ORPHA:9"]  # DECIPHER not kept
    assert kb.dropped_annotations == 1  # HP:0000099 is not in hp.obo
    col = kb.term_index
    d1 = kb.frequency[0].toarray().ravel()
    assert d1[col("HP:0000003")] == 0.5 and d1[col("HP:0000006")] == 1.0
    assert kb.frequency[1, col("HP:0000004")] == pytest.approx(0.9)
    assert math.isnan(kb.frequency[2, col("HP:0000005")])  # no frequency given
    assert kb.absent[1, col("HP:0000006")] == 1 and kb.absent.nnz == 1
    assert kb.inheritance[0, col("HP:0000003")] == 1  # the obsolete id mapped to its replacement


def test_closure_is_reflexive_and_transitive(tiny_kb):
    kb = tiny_kb
    ancestors = {kb.term_ids[j] for j in kb.closure[kb.term_index("HP:0000003")].indices}
    assert ancestors == {"HP:0000003", "HP:0000002", "HP:0000118", "HP:0000001"}
    assert kb.subtree("HP:0000002").sum() == 3


def test_old_ids_map_and_unknown_ids_are_named(tiny_kb):
    kb = tiny_kb
    a1 = kb.term_index("HP:0000003")
    columns, unknown = kb.resolve(["HP:0000008", "HP:0000007", "HP:0000003"])
    assert columns.tolist() == [a1] and unknown == []
    with pytest.raises(MedllmError, match=r"HP:0009998, HP:0009999"):
        kb.resolve(["HP:0000003", "HP:0009998", "HP:0009999"])
    columns, unknown = kb.resolve(["HP:0009999", "HP:0000006"], strict=False)
    assert unknown == ["HP:0009999"] and len(columns) == 1


def test_cache_round_trip(hpo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLLM_CACHE_DIR", str(tmp_path / "cache"))
    first = load_knowledge_base(hpo_dir)
    second = load_knowledge_base(hpo_dir)
    assert not first.from_cache and second.from_cache
    assert list((tmp_path / "cache" / "phenotype").glob("*.tmp")) == []  # no temporary file left
    assert second.term_ids.tolist() == first.term_ids.tolist()
    assert second.release == first.release
    for name in ("closure", "frequency", "absent", "parents"):
        a, b = getattr(first, name), getattr(second, name)
        assert np.array_equal(a.indices, b.indices) and np.allclose(a.data, b.data, equal_nan=True)
    assert second.term_index("HP:0000007") == first.term_index("HP:0000003")


def test_supplement_adds_only_the_diseases_the_annotations_lack(hpo_dir, tmp_path):
    supplement = tmp_path / "supplement.hpoa"
    columns = "database_id disease_name qualifier hpo_id reference evidence onset frequency sex modifier aspect"
    header = "\t".join(columns.split())
    rows = [
        "OMIM:1\tRenamed one\t\tHP:0000004\t\t\t\t\t\t\tP",  # already annotated: kept as the annotations have it
        "OMIM:77\tNewer disease\t\tHP:0000003\t\t\t\t\t\t\tP",
        "OMIM:77\tNewer disease\t\tHP:0000004\t\t\t\t\t\t\tP",
    ]
    supplement.write_text("#version: 2100-01-01\n" + header + "\n" + "\n".join(rows) + "\n")
    plain = build_knowledge_base(hpo_dir)
    kb = build_knowledge_base(hpo_dir, supplement=supplement)
    assert kb.disease_ids.tolist() == sorted([*plain.disease_ids.tolist(), "OMIM:77"])
    row, col = kb.id_rows()["OMIM:77"], kb.term_index
    assert kb.disease_names[row] == "Newer disease" and kb.release == "2099-01-01, with 1 diseases of 2100-01-01"
    assert kb.frequency[row].nnz == 2 and math.isnan(kb.frequency[row, col("HP:0000003")])  # terms only
    one = kb.id_rows()["OMIM:1"]
    assert kb.disease_names[one] == plain.disease_names[0] and kb.frequency[one, col("HP:0000004")] == 0


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(MedllmError, match=r"hp\.obo"):
        load_knowledge_base(tmp_path)


@pytest.mark.parametrize(("raw", "value"), [("3/4", 0.75), ("40%", 0.4), ("HP:0040283", 0.17), ("0/5", 0.0)])
def test_parse_frequency(raw, value):
    assert parse_frequency(raw) == pytest.approx(value)
    assert math.isnan(parse_frequency(""))
