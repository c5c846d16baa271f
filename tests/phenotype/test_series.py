"""Numbered subtype series read from disease names, and the series-level rank."""

import numpy as np
import pytest

from medllm.phenotype.series import series_groups, series_name, series_rank


@pytest.mark.parametrize(
    "name, series",
    [
        ("Leber congenital amaurosis 6", "Leber congenital amaurosis"),
        ("Microcephaly 5, primary, autosomal recessive", "Microcephaly, primary, autosomal recessive"),
        ("Cardiomyopathy, dilated, 1A", "Cardiomyopathy, dilated"),
        ("Spinocerebellar ataxia type 31", "Spinocerebellar ataxia"),
        ("Charcot-Marie-Tooth disease, axonal, type 2MM", "Charcot-Marie-Tooth disease, axonal"),
        ("Type 2 diabetes mellitus", None),  # the number does not close the name
        ("1p36 deletion syndrome", None),
        ("22q11.2 deletion syndrome", None),
        ("COVID-19", None),
        ("Kabuki syndrome", None),
    ],
)
def test_series_name_drops_the_one_closing_subtype_number(name, series):
    assert series_name(name) == series


def test_series_groups_meet_across_word_order_and_keep_the_rest_apart():
    names = np.array(
        [
            "Spastic paraplegia 78, autosomal recessive",  # OMIM's inverted name
            "Autosomal recessive spastic paraplegia type 4",  # Orphanet's
            "Spastic paraplegia 3A, autosomal dominant",  # another inheritance: another series
            "Kabuki syndrome",
            "Marfan syndrome",
        ]
    )
    groups = series_groups(names)
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3], groups[4]}) == 4


def test_series_rank_counts_a_sibling_first_as_a_hit_and_each_series_once():
    groups = np.array([0, 0, 1, 2, 2])  # diseases 0-1 and 3-4 are siblings
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert series_rank(scores, groups, [1]) == 1  # its sibling ranks first
    assert series_rank(scores, groups, [4]) == 3  # behind series 0 and disease 2, whatever the rank in the list
    assert series_rank(scores, groups, []) == float("inf")
