"""Common-disease rows: the curated table read against the ontology, one row per ICD-10 code, merged ids."""

import pytest
import yaml

from conftest import write_hpo
from medllm.errors import MedllmError
from medllm.phenotype.annotations import DiseaseAnnotations
from medllm.phenotype.common import _incidence_profile, common_diseases, read_curated
from medllm.phenotype.kb import build_knowledge_base
from medllm.phenotype.matrices import select_diseases
from medllm.phenotype.merge import merge_diseases
from medllm.phenotype.rank import id_positions, load_ranker

A1, B1 = "HP:0000003", "HP:0000006"
MI = {
    "name": "Acute myocardial infarction",
    "icd10": "I21.9",
    "prevalence": "common",
    "ages": [30, 110],
    "findings": {"A1": 0.9, "b1": 0.4},  # labels match case-insensitively
    "source": "a test",
}


def write_table(path, *entries, prevalence=None):
    path.write_text(yaml.safe_dump({"diseases": list(entries), "prevalence": prevalence or {}}))
    return path


def test_a_curated_entry_becomes_an_icd10_row_named_from_icd_10_cm(tiny_kb, tmp_path):
    rows, overrides = read_curated(write_table(tmp_path / "t.yaml", MI, prevalence={"rare": ["D66"]}), tiny_kb)
    (row,) = rows
    assert row.id == "ICD10:I21.9" and row.phenotypes == {A1: 0.9, B1: 0.4}
    assert row.ages == (30.0, 110.0) and row.prevalence == "common" and row.sex is None
    assert "Myocardial infarction (acute)" in row.synonyms  # ICD-10-CM inclusion term, "NOS" dropped
    assert overrides == {"D66": "rare"}


@pytest.mark.parametrize(
    "change, words",
    [
        ({"findings": {"Not a term": 0.5}}, "'Not a term' is not an HPO term label"),
        ({"findings": {"A1": 1.5}}, "frequency of 'A1'"),
        ({"prevalence": "often"}, "prevalence must be one of"),
        ({"icd10": "Z99.999"}, "not a code"),
        ({"source": ""}, "field 'source' missing"),
        ({"sex": "f"}, "sex must be"),
    ],
)
def test_a_bad_entry_is_an_error_naming_it(tiny_kb, tmp_path, change, words):
    with pytest.raises(MedllmError, match=r"diseases\.0") as error:
        read_curated(write_table(tmp_path / "t.yaml", {**MI, **change}), tiny_kb)
    assert words in str(error.value)


def test_rows_of_one_code_are_one_disease(tiny_kb, tmp_path):
    again = {**MI, "name": "Heart attack", "findings": {"A1": 0.5, "A2": 0.3}}
    (row,) = common_diseases(tiny_kb, write_table(tmp_path / "t.yaml", MI, again), packages=False)
    assert row.name == "Acute myocardial infarction" and "Heart attack" in row.synonyms
    assert row.phenotypes == {A1: 0.9, B1: 0.4, "HP:0000004": 0.3}  # the larger frequency of a term kept


def test_entries_sharing_a_name_merge_into_one_with_every_id():
    sle = DiseaseAnnotations("ICD10:M32.9", "Lupus", {"HP:1": 0.5}, prevalence="common", synonyms=["SLE"])
    sle.synonyms.append("Systemic lupus erythematosus")
    orpha = DiseaseAnnotations("ORPHA:536", "Systemic lupus erythematosus", {"HP:1": 0.9, "HP:2": 0.3})
    omim = DiseaseAnnotations("OMIM:152700", "Systemic Lupus Erythematosus", {"HP:3": 0.2}, absent={"HP:2"})
    subtype = DiseaseAnnotations("OMIM:614420", "Systemic lupus erythematosus 16", {"HP:4": 1.0})
    merged = merge_diseases([orpha, subtype, omim, sle])
    assert [d.id for d in merged] == ["ICD10:M32.9", "OMIM:614420"]  # no fuzzy merging of the numbered subtype
    one = merged[0]
    assert one.other_ids == ["OMIM:152700", "ORPHA:536"] and one.name == "Lupus" and one.prevalence == "common"
    assert one.phenotypes == {"HP:1": 0.9, "HP:2": 0.3, "HP:3": 0.2}
    assert one.absent == set()  # OMIM's NOT does not cancel ORPHA's finding


def test_orphanets_type_n_is_omims_subtype_n_and_other_subtypes_stay_apart():
    sca31 = DiseaseAnnotations("OMIM:117210", "Spinocerebellar ataxia 31", {"HP:1": 0.5})
    orpha31 = DiseaseAnnotations("ORPHA:217012", "Spinocerebellar ataxia type 31", {"HP:2": 0.5})
    orpha3 = DiseaseAnnotations("ORPHA:98757", "Spinocerebellar ataxia type 3", {"HP:3": 0.5})
    merged = merge_diseases([orpha31, sca31, orpha3])
    assert [(d.id, d.other_ids) for d in merged] == [("OMIM:117210", ["ORPHA:217012"]), ("ORPHA:98757", [])]


def test_omims_inverted_names_are_orphanets_in_natural_order_where_unambiguous():
    def entry(disease_id: str, name: str) -> DiseaseAnnotations:
        return DiseaseAnnotations(disease_id, name, {"HP:1": 0.5})

    merged = merge_diseases(
        [
            entry("ORPHA:513436", "Autosomal recessive spastic paraplegia type 78"),
            entry("OMIM:617225", "Spastic paraplegia 78, autosomal recessive"),
            entry("OMIM:614321", "Myopathy, distal, Tateyama type"),
            entry("ORPHA:488650", "Distal myopathy, Tateyama type"),
            entry("OMIM:181405", "Scapuloperoneal spinal muscular atrophy"),  # two OMIM entries: distinct
            entry("OMIM:271220", "Spinal muscular atrophy, scapuloperoneal"),
            entry("ORPHA:1", "Cone-rod dystrophy 2"),  # hyphenated words stay whole
            entry("OMIM:1", "Rod-cone dystrophy 2"),
            entry("OMIM:2", "Deafness, autosomal recessive 1"),  # other words stay apart
            entry("ORPHA:2", "Autosomal dominant deafness type 1"),
        ]
    )
    assert sorted((d.id, *d.other_ids) for d in merged) == [
        ("OMIM:1",),
        ("OMIM:181405",),
        ("OMIM:2",),
        ("OMIM:271220",),
        ("OMIM:614321", "ORPHA:488650"),
        ("OMIM:617225", "ORPHA:513436"),
        ("ORPHA:1",),
        ("ORPHA:2",),
    ]
    ambiguous = [entry("ORPHA:3", "Muscular atrophy, spinal, scapuloperoneal"), *merged]
    assert "ORPHA:3" in {d.id for d in merge_diseases(ambiguous)}, "two OMIM entries share its words: kept apart"


def test_a_merged_entry_is_ranked_and_matched_under_any_of_its_ids(tmp_path):
    kb = build_knowledge_base(
        write_hpo(tmp_path / "hpo"), common=write_table(tmp_path / "t.yaml", {**MI, "synonyms": ["Disease one"]})
    )
    assert kb.n_diseases == 4 and kb.ids_of(0) == ["ICD10:I21.9", "OMIM:1"]
    assert kb.prevalence.tolist() == ["common", "rare", "rare", "rare"]
    assert 0 in select_diseases(kb, ("OMIM:",))  # ranked with the OMIM diseases through its other id
    from medllm.config import PhenotypeConfig

    ranker = load_ranker(PhenotypeConfig(prefixes=["OMIM:"]), kb)
    assert id_positions(ranker)["OMIM:1"] == id_positions(ranker)["ICD10:I21.9"] == 0


def test_clinosim_incidence_gives_class_sex_and_ages():
    incidence = {"0-4": {"M": 0, "F": 0}, "15-24": {"M": 0, "F": 12}, "85+": {"M": 0, "F": 60}}
    assert _incidence_profile(incidence) == ("common", "female", (15.0, 130.0))
    assert _incidence_profile({"0-4": {"M": 3, "F": 2}}) == ("uncommon", None, (0.0, 4.0))
