"""ICD-10-CM labels for codes and diagnosis names."""

from __future__ import annotations

import pytest

from medllm.data.simulators.icd10 import icd10_label

pytest.importorskip("simple_icd_10_cm")


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
