"""Synthea records (life history → active problems and medications) on a small seeded population."""

from __future__ import annotations

import re

import pytest

from medllm.data.simulators.synthea import iter_synthea
from medllm.data.sources import LoadStats

pytest.importorskip("synthea")
pytest.importorskip("simple_icd_10_cm")

SYNTHEA_ARGS = {"n_patients": 2, "seed": 1, "min_age": 18, "max_age": 22}


@pytest.fixture(scope="module")
def synthea_run():
    stats = LoadStats()
    return list(iter_synthea(**SYNTHEA_ARGS, stats=stats)), stats


def test_synthea_records(synthea_run, check_shape):
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
