"""Seed-dataset loaders: each fixture writes invented text in the dataset's real on-disk format."""

from __future__ import annotations

import csv
import json
import logging
import types
from pathlib import Path

import pytest

from medllm.data.sources import (
    CHEXPERT_COLUMNS,
    SOURCES,
    SYSTEM_PROMPTS,
    LoadStats,
    chexpert_sentence,
    iter_records,
    reservoir_sample,
)
from medllm.errors import MedllmError


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load(source: str, path: Path, **kwargs) -> tuple[list[dict], LoadStats]:
    stats = LoadStats()
    return list(iter_records(source, path, stats, **kwargs)), stats


def user(record: dict) -> str:
    return record["messages"][1]["content"]


def check_shape(record: dict, source: str) -> None:
    info = SOURCES[source]
    assert record["source"] == source and record["id"].startswith(f"{source}:")
    assert record["task"] == info.task and record["license"] == info.license
    assert record["messages"][0] == {"role": "system", "content": SYSTEM_PROMPTS[info.task]}
    assert [m["role"] for m in record["messages"]] == ["system", "user"]


# ----------------------------------------------------------------------------- EHR-DS-QA

NOTE_A = (
    "Name: ___ Unit No: ___\nDischarge Diagnosis: community-acquired pneumonia\n"
    "Discharge Medications: amoxicillin 500 mg by mouth three times daily for 5 days"
)
NOTE_B = "Name: ___\nDischarge Diagnosis: left ankle fracture\nFollow-up: orthopaedics clinic in ___ weeks"
EHR_HEADER = [
    "original_id",
    "note",
    "qa_pairs",
    "extended_context",
    "note_id",
    "subject_id",
    "hadm_id",
    "note_type",
    "human_verified",
]


@pytest.fixture
def ehrdsqa_csv(tmp_path) -> Path:
    pairs_a = [
        {"question": "What was the discharge diagnosis?", "answer": "Community-acquired pneumonia."},
        {
            "question": "What is the patient's antibiotic?",
            "answer": "Amoxicillin 500 mg three times daily.",
            "correct": True,
        },
    ]
    pairs_b = [{"question": "Which bone was fractured?", "answer": "The left ankle."}]
    literal_a, literal_b = repr(pairs_a), repr(pairs_b)  # Python literals: single quotes, True
    assert "'question'" in literal_a and "True" in literal_a
    return write_csv(
        tmp_path / "mimic_iv_note_qa.csv",
        EHR_HEADER,
        [
            [17, NOTE_A, literal_a, "False", "10000001-DS-1", "10000001", "20000001", "DS", ""],
            [18, NOTE_B, literal_b, "False", "10000002-DS-3", "", "20000002", "DS", "True"],
        ],
    )


@pytest.fixture
def ehrdsqa_verified(tmp_path) -> Path:
    notes = [
        {
            "original_id": 17,
            "note": NOTE_A,
            "extended_context": False,
            "note_id": "10000001-DS-1",
            "subject_id": 10000001,
            "hadm_id": 20000001,
            "note_type": "DS",
            "human_verified": True,
            "qa_pairs": [
                {
                    "question": "What was the discharge diagnosis?",
                    "answer": "Community-acquired pneumonia.",
                    "correct": True,
                },
                {"question": "How long is the antibiotic course?", "answer": "Ten days.", "correct": False},
                {"question": "What is the antibiotic dose?", "answer": "500 mg three times daily.", "correct": True},
            ],
        }
    ]
    path = tmp_path / "mimic_iv_note_qa_verified.json"
    path.write_text(json.dumps(notes, indent=1))
    return path


def test_ehrdsqa_csv(ehrdsqa_csv):
    records, stats = load("ehrdsqa", ehrdsqa_csv)
    assert records[0] == {
        "source": "ehrdsqa",
        "id": "ehrdsqa:17:0",
        "group": "10000001",
        "task": "qa",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPTS["qa"]},
            {"role": "user", "content": f"Discharge note:\n{NOTE_A}\n\nQuestion: What was the discharge diagnosis?"},
        ],
        "reference": "Community-acquired pneumonia.",
        "license": "PhysioNet Credentialed Health Data License 1.5.0",
        "meta": {"verified": None},
    }
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        ("ehrdsqa:17:0", "10000001", "Community-acquired pneumonia.", {"verified": None}),
        ("ehrdsqa:17:1", "10000001", "Amoxicillin 500 mg three times daily.", {"verified": True}),
        # no subject_id: the patient comes from the MIMIC note id; the note's human_verified applies
        ("ehrdsqa:18:0", "10000002", "The left ankle.", {"verified": True}),
    ]
    assert "Question: What is the patient's antibiotic?" in user(records[1])
    assert "Name: ___ Unit No: ___" in user(records[0])  # de-identified spans kept as they are
    for record in records:
        check_shape(record, "ehrdsqa")
    assert (stats.read, stats.yielded, stats.bad, stats.filtered) == (2, 3, 0, 0)


def test_ehrdsqa_verified_drops_incorrect_pairs(ehrdsqa_verified):
    records, stats = load("ehrdsqa", ehrdsqa_verified)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        ("ehrdsqa:17:0", "10000001", "Community-acquired pneumonia.", {"verified": True}),
        ("ehrdsqa:17:2", "10000001", "500 mg three times daily.", {"verified": True}),
    ]
    assert all("Ten days" not in user(r) for r in records)
    assert (stats.read, stats.yielded, stats.bad, stats.filtered) == (1, 2, 0, 1)


def test_malformed_csv_row_is_skipped_and_located(tmp_path, caplog):
    path = write_csv(
        tmp_path / "mimic_iv_note_qa.csv",
        EHR_HEADER,
        [
            [17, NOTE_A, "[{'question': 'Q1?', 'answer': 'A1.'}]", "False", "10000001-DS-1", "10000001", "", "DS", ""],
            [18, NOTE_B, "[{'question': 'Q2?', 'answer': ", "False", "10000002-DS-1", "10000002", "", "DS", ""],
            [19, "Short note.", "[{'question': 'Q3?', 'answer': 'A3.'}]", "False", "10000003-DS-1", "", "", "DS", ""],
        ],
    )
    with caplog.at_level(logging.WARNING, logger="medllm.data.sources"):
        records, stats = load("ehrdsqa", path, max_bad_fraction=0.5)
    # NOTE_A spans 3 lines, so the second row starts on line 5
    assert [r["id"] for r in records] == ["ehrdsqa:17:0", "ehrdsqa:19:0"]
    assert (stats.read, stats.bad, stats.bad_locations) == (3, 1, [f"{path}:5"])
    assert f"{path}:5" in caplog.text and "qa_pairs" in caplog.text


# ----------------------------------------------------------------------------- PMC-Patients

PMC_PATIENTS = [
    {
        "patient_id": 1,
        "patient_uid": "7665777-1",
        "PMID": 33492400,
        "file_path": "comm/PMC007xxxxxx/PMC7665777.xml",
        "title": "Invented case: Kawasaki disease presenting as isolated cervical lymphadenitis",
        "patient": "A 4-year-old boy presented with fever for six days and a tender neck swelling.",
        "age": [[4.0, "year"]],
        "gender": "M",
        "relevant_articles": {"2145": 1},
        "similar_patients": {"7665777-2": 2, "1234567-1": 1},
    },
    {
        "patient_id": 2,
        "patient_uid": "7665777-2",
        "PMID": 33492400,
        "file_path": "comm/PMC007xxxxxx/PMC7665777.xml",
        "title": "Invented case: Kawasaki disease presenting as isolated cervical lymphadenitis",
        "patient": "Her sister, aged 1 year and 2 months, had fever and a rash.",
        "age": [[1.0, "year"], [2.0, "month"]],
        "gender": "F",
        "relevant_articles": {},
        "similar_patients": {},
    },
]
PMC_HEADER = [
    "patient_id",
    "patient_uid",
    "PMID",
    "file_path",
    "title",
    "patient",
    "age",
    "gender",
    "relevant_articles",
    "similar_patients",
]
PMC_EXPECTED = [
    (
        "pmc_patients:7665777-1",
        "33492400",
        {"age": [[4.0, "year"]], "gender": "M", "similar_patients": ["7665777-2", "1234567-1"]},
    ),
    (
        "pmc_patients:7665777-2",
        "33492400",
        {"age": [[1.0, "year"], [2.0, "month"]], "gender": "F", "similar_patients": []},
    ),
]


@pytest.fixture
def pmc_json(tmp_path) -> Path:
    path = tmp_path / "PMC-Patients.json"
    path.write_text(json.dumps(PMC_PATIENTS))
    return path


@pytest.fixture
def pmc_csv(tmp_path) -> Path:
    rows = [
        [p[k] if k not in ("age", "relevant_articles", "similar_patients") else repr(p[k]) for k in PMC_HEADER]
        for p in PMC_PATIENTS
    ]
    assert rows[0][6] == "[[4.0, 'year']]"  # the CSV's Python-literal strings
    return write_csv(tmp_path / "PMC-Patients.csv", PMC_HEADER, rows)


@pytest.mark.parametrize("fixture", ["pmc_json", "pmc_csv"])
def test_pmc_patients(fixture, request):
    records, stats = load("pmc_patients", request.getfixturevalue(fixture))
    assert [(r["id"], r["group"], r["meta"]) for r in records] == PMC_EXPECTED
    assert records[0]["reference"] == PMC_PATIENTS[0]["title"]
    assert user(records[0]) == (
        f"Patient summary:\n{PMC_PATIENTS[0]['patient']}\n\nSummarise the key findings and the most likely diagnosis."
    )
    assert records[0]["license"] == "CC BY-NC-SA 4.0"
    for record in records:
        check_shape(record, "pmc_patients")
    assert (stats.read, stats.yielded, stats.bad) == (2, 2, 0)


def test_pmc_streams_lazily(tmp_path):
    patients = [{**PMC_PATIENTS[0], "patient_uid": f"{i}-1", "PMID": i} for i in range(2000)]
    path = tmp_path / "PMC-Patients.json"
    path.write_text(json.dumps(patients))
    stats = LoadStats()
    records = iter_records("pmc_patients", path, stats)
    assert isinstance(records, types.GeneratorType) and stats.read == 0
    assert next(records)["id"] == "pmc_patients:0-1"
    assert stats.read == 1  # one object parsed, not the whole array
    assert sum(1 for _ in records) == 1999 and stats.yielded == 2000

    # a truncated file still yields its first records before the parse error
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    truncated = iter_records("pmc_patients", path)
    assert next(truncated)["id"] == "pmc_patients:0-1"
    with pytest.raises(MedllmError, match="invalid JSON"):
        list(truncated)


def test_max_records_draws_a_seeded_uniform_sample_from_the_stream(tmp_path):
    patients = [{**PMC_PATIENTS[0], "patient_uid": f"{i}-1", "PMID": i} for i in range(2000)]
    path = tmp_path / "PMC-Patients.json"
    path.write_text(json.dumps(patients))
    sample, seen = reservoir_sample(iter_records("pmc_patients", path), 100, seed=3)
    again, _ = reservoir_sample(iter_records("pmc_patients", path), 100, seed=3)
    assert seen == 2000 and len(sample) == 100 and [r["id"] for r in sample] == [r["id"] for r in again]
    picked = sorted(int(r["id"].split(":")[1].split("-")[0]) for r in sample)
    assert picked != list(range(100)) and picked[-1] > 1500, "drawn from the whole file, not its head"
    assert sum(p < 1000 for p in picked) in range(30, 71)  # about half from each half (binomial, p = 0.5)


def test_too_many_bad_records_fail_early(tmp_path):
    patients = [{**PMC_PATIENTS[0], "patient_uid": f"{i}-1"} for i in range(1000)]
    for p in patients[:10]:
        del p["title"]
    path = tmp_path / "PMC-Patients.json"
    path.write_text(json.dumps(patients))
    stats = LoadStats()
    with pytest.raises(MedllmError, match=r"10 of 100 pmc_patients records \(10%\) are malformed.*missing field"):
        list(iter_records("pmc_patients", path, stats))
    assert stats.read == 100  # stopped at the early check, not at the end of the file
    assert len(stats.bad_locations) == 10 and stats.bad_locations[0] == f"{path} [0]"
    assert len(list(iter_records("pmc_patients", path, max_bad_fraction=0.1))) == 990  # at the limit is allowed


def test_too_many_bad_records_at_the_end(tmp_path):
    path = tmp_path / "pinfo-mz-dev.txt"
    path.write_text("1\twhat is asthma ?\tasthma is a condition of the airways ,\nnot a healthqa row\n")
    with pytest.raises(MedllmError, match=r"1 of 2 healthqa records \(50%\).*pinfo-mz-dev.txt:2"):
        list(iter_records("healthqa", path))


# ----------------------------------------------------------------------------- BioRead

BIOREAD_1 = """@entity1 is a common cause of @entity2 in adults .
treatment of @entity2 with @entity3 reduces symptoms .
------------------------------
patients with XXXXXX were given @entity3 .
------------------------------
@entity1:smoking
@entity2:chronic bronchitis
@entity3:bronchodilators
------------------------------
@entity2:chronic bronchitis
=============================="""
BIOREAD_2 = """@entity5 levels rise in @entity6 .
------------------------------
XXXXXX is measured to diagnose @entity6 .
------------------------------
@entity5:troponin
@entity6:myocardial infarction
------------------------------
@entity5:troponin"""


@pytest.fixture
def bioread_dir(tmp_path) -> Path:
    folder = tmp_path / "bioread_dataset" / "bioread_lite"
    folder.mkdir(parents=True)
    (folder / "test_part_10.txt").write_text(BIOREAD_2 + "\n")
    # records end at a line of '=' or, tolerantly, at a blank line after the answer
    (folder / "test_part_2.txt").write_text(BIOREAD_1 + "\n" + BIOREAD_2 + "\n\n\n" + BIOREAD_2 + "\n")
    return folder


def test_bioread(bioread_dir):
    records, stats = load("bioread", bioread_dir)
    assert [(r["id"], r["reference"]) for r in records] == [
        ("bioread:bioread_lite/test_part_2:1", "chronic bronchitis"),  # part_2 before part_10
        ("bioread:bioread_lite/test_part_2:12", "troponin"),
        ("bioread:bioread_lite/test_part_2:22", "troponin"),
        ("bioread:bioread_lite/test_part_10:1", "troponin"),
    ]
    first = records[0]
    assert first["meta"] == {"candidates": ["smoking", "chronic bronchitis", "bronchodilators"]}
    assert user(first) == (
        "Text:\n@entity1 is a common cause of @entity2 in adults .\ntreatment of @entity2 with @entity3 reduces "
        "symptoms .\n\nSentence: patients with ____ were given @entity3 .\nCandidates (entity: name):\n"
        "@entity1: smoking\n@entity2: chronic bronchitis\n@entity3: bronchodilators\n"
        "Fill in the blank (____) with one candidate; answer with its name."
    )
    assert len({r["group"] for r in records}) == 2  # same context, same group
    assert records[1]["group"] == records[3]["group"]
    for record in records[:1]:
        check_shape(record, "bioread")
    assert (stats.read, stats.bad) == (4, 0)

    glob_records, _ = load("bioread", bioread_dir / "*_part_10.txt")
    assert [r["id"] for r in glob_records] == ["bioread:bioread_lite/test_part_10:1"]


def test_bioread_record_that_does_not_fit_is_located(tmp_path, caplog):
    broken = BIOREAD_2.replace("------------------------------\n@entity5:troponin", "")  # no answer part
    path = tmp_path / "train_part_1.txt"
    path.write_text(BIOREAD_1 + "\n" + broken + "\n==========\n" + BIOREAD_1 + "\n")
    with caplog.at_level(logging.WARNING, logger="medllm.data.sources"):
        records, stats = load("bioread", path, max_bad_fraction=0.5)
    assert len(records) == 2 and stats.bad_locations == [f"{path}:12"]
    assert "expected 4 parts" in caplog.text


# ----------------------------------------------------------------------------- CliCR


@pytest.fixture
def clicr_dir(tmp_path) -> Path:
    data = {
        "version": "1.0",
        "data": [
            {
                "source": "http://casereports.bmj.com/content/invented-1",
                "document": {
                    "title": "BEG__Lyme disease__END presenting with facial palsy",
                    "context": "a 34-year-old hiker developed BEG__erythema migrans__END and then "
                    "BEG__facial palsy__END .",
                    "qas": [
                        {
                            "id": "invented-1.1",
                            "query": "serology confirmed @placeholder .",
                            "answers": [
                                {"text": "Lyme disease", "origin": "dataset", "cui": "C0024198", "sem_type": "dsyn"},
                                {"text": "Lyme borreliosis", "origin": "UMLS", "cui": "C0024198", "sem_type": "dsyn"},
                                {"text": "Lyme disease", "origin": "UMLS", "cui": "C0024198", "sem_type": "dsyn"},
                            ],
                        },
                        {
                            "id": "invented-1.2",
                            "query": "she was treated with BEG__@placeholder__END .",
                            "answers": [
                                {"text": "doxycycline", "origin": "dataset", "cui": "C0013090", "sem_type": "phsu"}
                            ],
                        },
                    ],
                },
            },
            {
                "source": "http://casereports.bmj.com/content/invented-2",
                "document": {
                    "title": "A swollen knee",
                    "context": "a child had a hot swollen knee after a BEG__scratch__END .",
                    "qas": [
                        {
                            "id": "invented-2.1",
                            "query": "aspiration grew @placeholder .",
                            "answers": [
                                {"text": "Staphylococcus aureus", "origin": "dataset"},
                                {"text": "S. aureus", "origin": "UMLS"},
                            ],
                        }
                    ],
                },
            },
        ],
    }
    (tmp_path / "dev1.0.json").write_text(json.dumps(data))
    return tmp_path


def test_clicr(clicr_dir):
    records, stats = load("clicr", clicr_dir)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        (
            "clicr:invented-1.1",
            "http://casereports.bmj.com/content/invented-1",
            "Lyme disease",
            {"alternatives": ["Lyme borreliosis"]},
        ),
        ("clicr:invented-1.2", "http://casereports.bmj.com/content/invented-1", "doxycycline", {"alternatives": []}),
        (
            "clicr:invented-2.1",
            "http://casereports.bmj.com/content/invented-2",
            "Staphylococcus aureus",
            {"alternatives": ["S. aureus"]},
        ),
    ]
    assert user(records[1]) == (
        "Case report: Lyme disease presenting with facial palsy\n"
        "a 34-year-old hiker developed erythema migrans and then facial palsy .\n\n"
        "Query: she was treated with ____ .\nFill in the blank (____) with a word or phrase."
    )
    assert all("BEG__" not in user(r) and "__END" not in user(r) and "@placeholder" not in user(r) for r in records)
    for record in records[1:]:
        check_shape(record, "clicr")
    assert (stats.read, stats.yielded) == (2, 3)  # read counts documents


# ----------------------------------------------------------------------------- HealthQA


@pytest.fixture
def healthqa_file(tmp_path) -> Path:
    rows = [
        ("1", "what are the symptoms of gout ?", "gout causes sudden severe pain and swelling in a joint ,"),
        ("0", "what are the symptoms of gout ?", "a bunion is a bony lump at the base of the big toe ,"),
        ("0", "what are the symptoms of gout ?", "plantar fasciitis causes heel pain ,"),
        ("0", "what are the symptoms of gout ?", "chilblains are itchy red patches ,"),
        ("1", "how is hay fever treated ?", "antihistamine tablets and steroid nasal sprays help , often , ,"),
        ("0", "how is hay fever treated ?", "asthma is a condition of the airways ,"),
        ("0", "how is hay fever treated ?", "sinusitis is swelling of the sinuses ,"),
    ]
    path = tmp_path / "pinfo-mz-test.txt"
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def test_healthqa(healthqa_file):
    records, stats = load("healthqa", healthqa_file)
    assert [(r["id"], r["group"], user(r), r["reference"], r["meta"]) for r in records] == [
        (
            "healthqa:pinfo-mz-test:1",
            "what are the symptoms of gout ?",
            "what are the symptoms of gout ?",
            "gout causes sudden severe pain and swelling in a joint",
            {},
        ),
        (
            "healthqa:pinfo-mz-test:5",
            "how is hay fever treated ?",
            "how is hay fever treated ?",
            "antihistamine tablets and steroid nasal sprays help , often ,",
            {},
        ),  # only the last comma is extra
    ]
    for record in records:
        check_shape(record, "healthqa")
    assert (stats.read, stats.yielded, stats.filtered, stats.bad) == (7, 2, 5, 0)


# ----------------------------------------------------------------------------- CheXpert


@pytest.fixture
def chexpert_csv(tmp_path) -> Path:
    lines = [
        ",".join(CHEXPERT_COLUMNS),
        # the format doc's example: No Finding 1.0, Pneumothorax 0.0, Support Devices 1.0
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
        "CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg,Female,68,Lateral,,1.0,,,,,,,,,0.0,,,,1.0",
        "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Male,77,Frontal,PA,,,1.0,,,-1.0,,,,,0.0,,,",
        "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Unknown,45,Frontal,AP,,,,,,,,,,,,,,",
    ]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chexpert(chexpert_csv):
    records, stats = load("chexpert", chexpert_csv)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        (
            "chexpert:CheXpert-v1.0-small/train/patient00001/study1",
            "patient00001",
            "No finding. Also: support devices; no pneumothorax.",
            {"labels": {"No Finding": "positive", "Pneumothorax": "negative", "Support Devices": "positive"}},
        ),
        (
            "chexpert:CheXpert-v1.0-small/train/patient00002/study2",
            "patient00002",
            "Findings: cardiomegaly; possible (uncertain) edema; no pleural effusion.",
            {"labels": {"Cardiomegaly": "positive", "Edema": "uncertain", "Pleural Effusion": "negative"}},
        ),
    ]
    assert user(records[1]) == (
        "Chest radiograph study.\nPatient: male, 77 years.\nCheXpert labels from the report:\n"
        "- Cardiomegaly: positive\n- Edema: uncertain\n- Pleural Effusion: negative\n"
        "Write the findings as one statement; state uncertain labels as uncertain."
    )
    for record in records:
        check_shape(record, "chexpert")
    # the lateral view repeats study1's labels; patient00003 has no label mentioned
    assert (stats.read, stats.yielded, stats.filtered, stats.bad) == (4, 2, 2, 0)


def test_chexpert_sentence():
    assert chexpert_sentence({"No Finding": "positive"}) == "No finding."
    assert chexpert_sentence({"Pleural Other": "uncertain", "Fracture": "positive"}) == (
        "Findings: fracture; possible (uncertain) other pleural abnormality."
    )


@pytest.fixture
def chexpert_plus_csv(tmp_path) -> Path:
    header = [
        "path_to_image",
        "path_to_dcm",
        "frontal_lateral",
        "section_findings",
        "section_impression",
        "age",
        "sex",
        "split",
    ]
    return write_csv(
        tmp_path / "df_chexpert_plus_240401.csv",
        header,
        [
            [
                "train/patient00001/study1/view1_frontal.jpg",
                "train/patient00001/study1/view1_frontal.dcm",
                "Frontal",
                "Heart size is normal.\nA right internal jugular line ends in the SVC.",
                "1. No acute process.",
                "68",
                "Female",
                "train",
            ],
            [
                "train/patient00001/study1/view2_lateral.jpg",
                "",
                "Lateral",
                "Heart size is normal.\nA right internal jugular line ends in the SVC.",
                "1. No acute process.",
                "68",
                "Female",
                "train",
            ],
            [
                "train/patient00002/study1/view1_frontal.jpg",
                "",
                "Frontal",
                "",
                "Stable cardiomegaly.",
                "77",
                "Male",
                "train",
            ],
        ],
    )


def test_chexpert_plus(chexpert_plus_csv):
    records, stats = load("chexpert_plus", chexpert_plus_csv)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        ("chexpert_plus:train/patient00001/study1", "patient00001", "1. No acute process.", {"split": "train"})
    ]
    assert user(records[0]) == (
        "Chest radiograph report.\nPatient: female, 68 years.\nFindings: Heart size is "
        "normal.\nA right internal jugular line ends in the SVC.\n\nWrite the impression."
    )
    check_shape(records[0], "chexpert_plus")
    assert (stats.read, stats.yielded, stats.filtered) == (3, 1, 2)  # a second view, a report without findings


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("source", list(SOURCES))
def test_missing_file_names_the_expected_format(source, tmp_path):
    with pytest.raises(MedllmError, match="expected") as info:
        iter_records(source, tmp_path / "absent" / "data.json")
    assert str(tmp_path / "absent") in str(info.value) and SOURCES[source].files in str(info.value)


def test_wrong_formats_are_named(tmp_path, pmc_csv, pmc_json, healthqa_file):
    as_json = tmp_path / "PMC-Patients.json"
    as_json.write_bytes(pmc_csv.read_bytes())  # a CSV given where a JSON array is expected
    with pytest.raises(MedllmError, match=r"not a JSON array; expected PMC-Patients.json"):
        list(iter_records("pmc_patients", as_json))
    with pytest.raises(MedllmError, match=r"not a JSON object; expected train1.0.json"):
        list(iter_records("clicr", pmc_json))
    with pytest.raises(MedllmError, match=r"unexpected CSV header \(missing Path, Sex, Age"):
        list(iter_records("chexpert", pmc_csv))
    with pytest.raises(MedllmError, match=r"unexpected CSV header.*expected mimic_iv_note_qa"):
        list(iter_records("ehrdsqa", tmp_path / "PMC-Patients.csv"))
    with pytest.raises(MedllmError, match="1 of 1 bioread records"):
        list(iter_records("bioread", healthqa_file))
    empty = tmp_path / "mimic_iv_note_qa.json"
    empty.write_text("[]")
    with pytest.raises(MedllmError, match="no ehrdsqa records found"):
        list(iter_records("ehrdsqa", empty))
    with pytest.raises(MedllmError, match="unknown source 'mimic'"):
        iter_records("mimic", empty)
