"""Phenopacket v2 loader: documents written in the store's real format, as a folder and as a zip."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from medllm.data.phenopackets import load_phenopackets, parse_age, split_by_disease
from medllm.errors import MedllmError


def phenopacket(case_id: str, disease: str, observed, excluded=(), sex="FEMALE", age="P2Y6M") -> dict:
    features = [{"type": {"id": t, "label": t}} for t in observed]
    features += [{"type": {"id": t, "label": t}, "excluded": True} for t in excluded]
    return {
        "id": case_id,
        "subject": {"id": "II-1", "timeAtLastEncounter": {"age": {"iso8601duration": age}}, "sex": sex},
        "phenotypicFeatures": features,
        "interpretations": [
            {
                "id": "x",
                "progressStatus": "SOLVED",
                "diagnosis": {"disease": {"id": disease, "label": f"Disease {disease}"}, "genomicInterpretations": []},
            }
        ],
        "diseases": [
            {
                "term": {"id": disease, "label": f"Disease {disease}"},
                "onset": {"ontologyClass": {"id": "HP:0003593", "label": "Infantile onset"}},
            }
        ],
        "metaData": {"created": "2025-09-28T09:15:01Z", "phenopacketSchemaVersion": "2.0.2"},
    }


DOCS = {
    "GENE1/PMID_1_P1.json": phenopacket("PMID_1_P1", "OMIM:100001", ["HP:0001250", "HP:0001263"], ["HP:0000252"]),
    "GENE1/PMID_1_P2.json": phenopacket("PMID_1_P2", "OMIM:100001", ["HP:0001250"], sex="MALE", age="P10D"),
    "GENE2/PMID_2_P1.json": phenopacket("PMID_2_P1", "OMIM:100002", ["HP:0004322"], sex="UNKNOWN_SEX"),
}
BROKEN = {
    "GENE2/PMID_2_P2.json": '{"id": "PMID_2_P2", "subject": {',  # truncated JSON
    "GENE3/PMID_3_P1.json": json.dumps({**phenopacket("PMID_3_P1", "OMIM:100003", []), "phenotypicFeatures": []}),
}


def write_folder(root: Path) -> Path:
    for name, doc in {**DOCS, **BROKEN}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2), encoding="utf-8")
    (root / "README.md").write_text("not a phenopacket")
    return root


def write_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, doc in {**DOCS, **BROKEN}.items():
            archive.writestr(name, doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_loads_cases_and_counts_skipped(tmp_path, layout):
    path = write_folder(tmp_path / "store") if layout == "folder" else write_zip(tmp_path / "all_phenopackets.zip")
    loaded = load_phenopackets(path)
    assert [c.id for c in loaded] == ["PMID_1_P1", "PMID_1_P2", "PMID_2_P1"]
    assert sorted(loaded.skipped) == ["GENE2/PMID_2_P2.json", "GENE3/PMID_3_P1.json"]
    assert "no phenotypic features" in loaded.skipped["GENE3/PMID_3_P1.json"]
    first = loaded.cases[0]
    assert first.cohort == "GENE1" and first.file == "GENE1/PMID_1_P1.json"
    assert first.observed == ("HP:0001250", "HP:0001263") and first.excluded == ("HP:0000252",)
    assert first.sex == "female" and first.age_years == pytest.approx(2.5) and first.onset_years == pytest.approx(0.5)
    assert first.disease_ids == ("OMIM:100001",) and first.disease_label == "Disease OMIM:100001"
    assert loaded.cases[1].sex == "male" and loaded.cases[1].age_years == pytest.approx(10 / 365.25)
    assert loaded.cases[2].sex is None


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(MedllmError, match="does not exist"):
        load_phenopackets(tmp_path / "nowhere.zip")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MedllmError, match="neither a folder nor a zip"):
        load_phenopackets(tmp_path / "notes.txt")


@pytest.mark.parametrize(
    ("element", "years"),
    [
        ({"age": {"iso8601duration": "P33Y"}}, 33.0),
        ({"age": {"iso8601duration": "P1Y6M"}}, 1.5),
        ({"age": {"iso8601duration": "P4W"}}, 28 / 365.25),
        ({"age": {"iso8601duration": "nonsense"}}, None),
        ({"gestationalAge": {"weeks": 20}}, 0.0),
        ({"ontologyClass": {"id": "HP:0003621", "label": "Juvenile onset"}}, 10.0),
        (None, None),
    ],
)
def test_parse_age(element, years):
    assert parse_age(element) == (pytest.approx(years) if years is not None else None)


def test_split_is_disease_disjoint_and_deterministic(tmp_path):
    loaded = load_phenopackets(write_folder(tmp_path / "store"))
    many = [replace(case, disease_ids=(f"OMIM:{i}",)) for i in range(30) for case in loaded.cases]
    parts = split_by_disease(many, seed=3)
    assert sum(len(p) for p in parts.values()) == len(many)
    diseases = {name: {c.disease_ids[0] for c in part} for name, part in parts.items()}
    assert not (diseases["dev"] & diseases["validation"]) and not (diseases["dev"] & diseases["test"])
    assert not (diseases["validation"] & diseases["test"])
    assert [len(d) for d in diseases.values()] == [18, 6, 6]
    again = split_by_disease(list(reversed(many)), seed=3)
    assert {n: {c.disease_ids[0] for c in p} for n, p in again.items()} == diseases
    assert {c.disease_ids[0] for c in split_by_disease(many, seed=4)["dev"]} != diseases["dev"]
    with pytest.raises(MedllmError):
        split_by_disease(many, fractions=(0.5, 0.5, 0.5))
