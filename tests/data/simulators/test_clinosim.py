"""clinosim records (ED presentations, discharge-summary Q&A) on a small seeded population."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medllm.data.simulators.clinosim import clinosim_records, iter_clinosim, simulate_clinosim
from medllm.data.simulators.icd10 import icd10_label
from medllm.data.sources import LoadStats
from medllm.errors import MedllmError

pytest.importorskip("clinosim")
pytest.importorskip("simple_icd_10_cm")

CLINOSIM_ARGS = (30, 1)  # 30 people, seed 1: 7 admissions (one through the ED) and 3 ED visits
RUN = "s1-p30"


@pytest.fixture(scope="module")
def clinosim_run():
    dataset = simulate_clinosim(*CLINOSIM_ARGS)
    stats = LoadStats()
    records = list(clinosim_records(dataset, RUN, stats=stats))
    return dataset, records, stats


def encounters_with(dataset, document: str) -> dict:
    return {
        r.encounters[0].encounter_id: r
        for r in dataset.patients
        if r.encounters and any(d.task_type == document for d in r.documents)
    }


def test_clinosim_records_have_the_schema_and_unique_ids(clinosim_run, check_shape):
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
