import json

import pytest

from medllm.cli import main
from medllm.data.dataset import load_index
from medllm.errors import MedllmError
from medllm.knowledge import Disease, Finding
from medllm.retrieval import CaseIndex, DiseaseIndex, load_case_corpus, split_findings


def disease(id_: str, *findings: str) -> Disease:
    return Disease(id=id_, name=id_, source="common", findings=[Finding(name=f) for f in findings])


DISEASES = [
    disease("gastritis", "Abdominal pain", "Nausea", "Vomiting"),
    disease("migraine", "Headache", "Photophobia", "Nausea"),
    disease("asthma", "Wheezing", "Dyspnea", "Cough"),
]


def test_split_findings():
    assert split_findings("A 40-year-old woman presents with cough, fever and night sweats. History: smoker") == [
        "cough",
        "fever",
        "night sweats",
        "smoker",
    ]


def test_dense_catches_a_paraphrase_that_shares_no_word():
    index = DiseaseIndex(DISEASES, method="hybrid")
    text = "A man presents with tummy ache and throwing up."
    assert index.search(text, 1, method="bm25")[0][1] == 0.0, "no word in common"
    assert index.search(text, 1, method="dense")[0][0].id == "gastritis"
    assert index.search(text, 1)[0][0].id == "gastritis"
    matches = index.evidence(text, ["gastritis"])["gastritis"]
    assert {m.finding for m in matches} == {"Abdominal pain", "Vomiting"}
    assert all(0.5 <= m.similarity <= 1 for m in matches)


def test_saved_index_ranks_the_same_and_checks_its_diseases(tmp_path):
    index = DiseaseIndex(DISEASES)
    index.save(tmp_path)
    loaded = DiseaseIndex.load(tmp_path, DISEASES)
    text = "presents with wheezing, cough and sensitivity to light"
    for method in ("bm25", "dense", "hybrid"):
        assert [d.id for d, _ in loaded.search(text, 3, method)] == [d.id for d, _ in index.search(text, 3, method)]
    with pytest.raises(MedllmError, match="another disease list"):
        DiseaseIndex.load(tmp_path, DISEASES[:2])
    with pytest.raises(MedllmError, match="medllm index"):
        DiseaseIndex.load(tmp_path / "missing", DISEASES)


def test_case_corpus_formats_and_errors(tmp_path):
    pmc = tmp_path / "PMC-Patients.json"
    pmc.write_text(
        json.dumps(
            [
                {
                    "patient_uid": "7665777-1",
                    "title": "Asthma in a smoker",
                    "patient": "A 50-year-old smoker with wheezing and cough.",
                }
            ]
        )
    )
    assert load_case_corpus(pmc) == [
        {
            "id": "PMC-Patients:7665777-1",
            "title": "Asthma in a smoker",
            "text": "A 50-year-old smoker with wheezing and cough.",
        }
    ]
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text("patient_uid,title,patient\n1-1,Migraine,Throbbing headache\n2-1,Empty,\n")
    with pytest.raises(MedllmError, match=r"cases.csv:3: missing field 'text'"):
        load_case_corpus(csv_file)
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text('{"id": "a", "text": "cough"}\n{"id": "b"\n')
    with pytest.raises(MedllmError, match=r"cases.jsonl:2: invalid JSON"):
        load_case_corpus(jsonl)
    with pytest.raises(MedllmError, match="not found"):
        load_case_corpus(tmp_path / "nope.jsonl")


def test_index_command_adds_a_case_corpus_served_as_similar_cases(tiny_dataset, make_client, tmp_path, capsys):
    corpus = tmp_path / "cases.jsonl"
    corpus.write_text(
        "".join(
            json.dumps(c) + "\n"
            for c in [
                {
                    "id": "case-asthma",
                    "title": "Wheezy smoker",
                    "text": "Smoker with wheezing, cough and shortness of breath.",
                },
                {"id": "case-migraine", "title": "Headache", "text": "Throbbing headache with photophobia and nausea."},
                {"id": "case-fracture", "title": "Fall", "text": "Wrist pain and swelling after a fall."},
            ]
        )
    )
    config_file = tmp_path / "recipe.yaml"
    config_file.write_text(f"output_dir: {tiny_dataset.output_dir}\n")
    assert main(["index", "--config", str(config_file), "--data.hpo_diseases", "0", "--cases", str(corpus)]) == 0
    assert "3 cases" in capsys.readouterr().out
    _index, cases = load_index(tiny_dataset)
    assert isinstance(cases, CaseIndex) and [c["id"] for c, _ in cases.search("wheezing and cough", 1)] == [
        "case-asthma"
    ]
    body = make_client().post("/v1/diagnose", json={"symptoms": ["wheezing", "cough"], "history": ["smoker"]}).json()
    assert body["similar_cases"][0]["source_id"] == "case-asthma"
    assert len(body["similar_cases"]) == 3
