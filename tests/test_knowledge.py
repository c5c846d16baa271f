import pytest

from medllm.knowledge import load_common_diseases, load_hpo_diseases, normalize_name, parse_frequency


@pytest.mark.parametrize(
    "raw, expected", [("3/4", 0.75), ("40%", 0.4), ("HP:0040281", 0.9), ("HP:0040285", 0.0), ("", 0.5), ("0/0", 0.5)]
)
def test_parse_frequency(raw, expected):
    assert parse_frequency(raw) == pytest.approx(expected)


def test_parse_frequency_rejects_unknown():
    with pytest.raises(ValueError):
        parse_frequency("often")


def test_normalize_name_keeps_subtype_numbers():
    assert normalize_name("Charcot–Marie–Tooth disease, type 4A") == "charcot marie tooth disease type 4a"
    assert normalize_name("Épilepsie 96") == "epilepsie 96"


@pytest.fixture(scope="module")
def hpo():
    return load_hpo_diseases(min_phenotypes=8)


def test_omim_and_orpha_entries_of_one_disease_count_once(hpo):
    keys = [normalize_name(d.name) for d in hpo]
    assert len(keys) == len(set(keys))
    merged = [d for d in hpo if d.other_ids]
    assert merged, "some diseases are listed under both OMIM and ORPHA"
    assert all({d.id.split(":")[0]} | {o.split(":")[0] for o in d.other_ids} == {"OMIM", "ORPHA"} for d in merged[:50])


def test_hpo_profiles_carry_frequencies_ancestors_and_lay_names(hpo):
    marfan = next(d for d in hpo if normalize_name(d.name) == "marfan syndrome")
    assert len(marfan.findings) >= 8
    assert all(0 < f.frequency <= 1 for f in marfan.findings)
    assert any(f.lay_names for d in hpo[:200] for f in d.findings)
    arachnodactyly = next(f for f in marfan.findings if f.name == "Arachnodactyly")
    assert "Long fingers" in arachnodactyly.ancestors
    assert "Phenotypic abnormality" not in arachnodactyly.ancestors


def test_common_diseases_sharing_an_icd10_code_are_one_disease():
    common = load_common_diseases()
    codes = [d.icd10 for d in common]
    assert len(codes) == len(set(codes))
    assert any(d.synonyms for d in common)
