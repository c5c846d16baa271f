"""EHR-DS-QA and PMC-Patients loaders, and the streaming, sampling and format checks run on their files."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pytest

from medllm.data.loaders import iter_records
from medllm.data.sources import SYSTEM_PROMPTS, LoadStats, reservoir_sample
from medllm.errors import MedllmError

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
def ehrdsqa_csv(tmp_path, write_csv) -> Path:
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


def test_ehrdsqa_csv(ehrdsqa_csv, load, user, check_shape):
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


def test_ehrdsqa_verified_drops_incorrect_pairs(ehrdsqa_verified, load, user):
    records, stats = load("ehrdsqa", ehrdsqa_verified)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        ("ehrdsqa:17:0", "10000001", "Community-acquired pneumonia.", {"verified": True}),
        ("ehrdsqa:17:2", "10000001", "500 mg three times daily.", {"verified": True}),
    ]
    assert all("Ten days" not in user(r) for r in records)
    assert (stats.read, stats.yielded, stats.bad, stats.filtered) == (1, 2, 0, 1)


def test_malformed_csv_row_is_skipped_and_located(tmp_path, caplog, write_csv, load):
    path = write_csv(
        tmp_path / "mimic_iv_note_qa.csv",
        EHR_HEADER,
        [
            [17, NOTE_A, "[{'question': 'Q1?', 'answer': 'A1.'}]", "False", "10000001-DS-1", "10000001", "", "DS", ""],
            [18, NOTE_B, "[{'question': 'Q2?', 'answer': ", "False", "10000002-DS-1", "10000002", "", "DS", ""],
            [19, "Short note.", "[{'question': 'Q3?', 'answer': 'A3.'}]", "False", "10000003-DS-1", "", "", "DS", ""],
        ],
    )
    with caplog.at_level(logging.WARNING, logger="medllm.data.loaders.reading"):
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
def pmc_csv(tmp_path, write_csv) -> Path:
    rows = [
        [p[k] if k not in ("age", "relevant_articles", "similar_patients") else repr(p[k]) for k in PMC_HEADER]
        for p in PMC_PATIENTS
    ]
    assert rows[0][6] == "[[4.0, 'year']]"  # the CSV's Python-literal strings
    return write_csv(tmp_path / "PMC-Patients.csv", PMC_HEADER, rows)


@pytest.mark.parametrize("fixture", ["pmc_json", "pmc_csv"])
def test_pmc_patients(fixture, request, load, user, check_shape):
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
