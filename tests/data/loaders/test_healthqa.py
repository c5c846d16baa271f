"""HealthQA loader."""

from __future__ import annotations

import pytest

from medllm.data.loaders import iter_records
from medllm.errors import MedllmError


def test_healthqa(healthqa_file, load, user, check_shape):
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


def test_too_many_bad_records_at_the_end(tmp_path):
    path = tmp_path / "pinfo-mz-dev.txt"
    path.write_text("1\twhat is asthma ?\tasthma is a condition of the airways ,\nnot a healthqa row\n")
    with pytest.raises(MedllmError, match=r"1 of 2 healthqa records \(50%\).*pinfo-mz-dev.txt:2"):
        list(iter_records("healthqa", path))
