"""Scrub: each kind of identifier replaced, clinical values left alone."""

from __future__ import annotations

import pytest

from data.curate.records import record, user
from medllm.data.curate.scrub import scrub, scrub_records
from medllm.data.curate.tally import Tally


@pytest.mark.parametrize(
    "raw, kind, expected",
    [
        ("Write to jane.doe+ward@mercy-hospital.org today.", "email", "Write to [EMAIL] today."),
        ("Call (555) 123-4567 or 555.123.4567.", "phone", "Call [PHONE] or [PHONE]."),
        ("Daughter: +44 20 7946 0958, office +1 617-555-0101 ext. 12", "phone", "Daughter: [PHONE], office [PHONE]"),
        ("Tel: 5551234567, fax 020 7946 0958", "phone", "Tel: [PHONE], fax [PHONE]"),
        ("MRN: 1234567; MRN 12345678; Acct #: 00987654", "id", "MRN: [ID]; MRN [ID]; Acct #: [ID]"),
        (
            "His medical record number is 76543210, SSN 123-45-6789.",
            "id",
            "His medical record number is [ID], SSN [ID].",
        ),
        ("Seen 03/14/2021 and 2021-03-14.", "date", "Seen [DATE] and [DATE]."),
        ("On March 14, 2021, then 14 Mar 2021 and 14-Mar-2021.", "date", "On [DATE], then [DATE] and [DATE]."),
    ],
)
def test_scrub_replaces_each_kind(raw, kind, expected):
    out, counts = scrub(raw)
    assert out == expected
    assert counts[kind] == expected.count(f"[{kind.upper()}]")
    assert sum(counts.values()) == counts[kind]


def test_scrub_keeps_clinical_values_years_and_deid_spans():
    raw = (
        "Name: ___ Unit No: ___ MRN: ___ Admission Date: ___\nBP 120/80, HR 88, ABG 7.35/40/80, "
        "amoxicillin 500 mg three times daily, 1-2 tabs q4-6h, plt 150-400, pain 5/10, smoker since 2019, "
        "1999-2000 admissions, K 4.0, penicillin 2400000 units, pager 12345"
    )
    out, counts = scrub(raw)
    assert out == raw
    assert counts == {"email": 0, "phone": 0, "id": 0, "date": 0}


def test_scrub_records_prompt_and_reference_with_counts():
    tally = Tally()
    records = [
        record("ehrdsqa", "1", "p1", "Name: ___ seen 03/14/2021, call 555-123-4567", "MRN: 1234567"),
        record("pmc_patients", "2", "a1", "no identifiers, 500 mg", "none"),
    ]
    out = list(scrub_records(records, tally))
    assert user(out[0]) == "Name: ___ seen [DATE], call [PHONE]" and out[0]["reference"] == "MRN: [ID]"
    assert out[1]["reference"] == "none"
    assert tally.counts["date"] == {"ehrdsqa": 1, "pmc_patients": 0}
    assert tally.counts["id"]["ehrdsqa"] == 1 and tally.counts["phone"]["ehrdsqa"] == 1
    assert tally.counts["records_changed"] == {"ehrdsqa": 1, "pmc_patients": 0}
