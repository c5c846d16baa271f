import numpy as np
import pytest

from medllm.eval.stats import (
    bootstrap_ci,
    calibration,
    expected_calibration_error,
    mcnemar_exact,
    paired_bootstrap_ci,
    reliability_bins,
    wilson_interval,
)


def test_mcnemar_exact_against_hand_computed_values():
    # 1 vs 9 discordant pairs: two-sided p = 2 * (1 + 10) / 2**10
    test = mcnemar_exact([True] * 9 + [False] + [True] * 5, [False] * 9 + [True] + [True] * 5)
    assert (test["only_first"], test["only_second"]) == (9, 1)
    assert test["p_value"] == pytest.approx(22 / 1024)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0


def test_wilson_interval_brackets_the_proportion():
    low, high = wilson_interval(50, 100)
    assert low < 0.5 < high and high - low == pytest.approx(0.19, abs=0.01)
    assert wilson_interval(0, 10)[0] == 0.0


def test_bootstrap_ci_covers_the_true_mean_on_synthetic_data():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(40):
        sample = rng.random(200) < 0.3
        low, high = bootstrap_ci(sample, seed=trial)
        hits += low <= 0.3 <= high
        assert low <= sample.mean() <= high
    assert hits >= 34, "a 95% interval should cover the true value in about 38 of 40 trials"
    assert bootstrap_ci([1.0]) is None
    assert bootstrap_ci([1, 0, 1, 1]) == bootstrap_ci([1, 0, 1, 1]), "seeded"


def test_paired_bootstrap_ci_of_a_known_difference():
    rng = np.random.default_rng(2)
    base = rng.random(300) < 0.4
    better = base | (rng.random(300) < 0.25)  # about +15 points on the same items
    low, high = paired_bootstrap_ci(better, base)
    assert 0 < low <= better.mean() - base.mean() <= high
    assert paired_bootstrap_ci(base, base) == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1, 0], [1])


def test_expected_calibration_error_and_bins_on_hand_made_inputs():
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    # 0.25 (x4, one right) is calibrated; 0.95 (x4, two right) is off by 0.45: ECE = 4 * 0.45 / 8
    confidence = [0.25] * 4 + [0.95] * 4
    correct = [True, False, False, False, True, True, False, False]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.225)
    bins = reliability_bins(confidence, correct)
    assert [(b["n"], b["accuracy"]) for b in bins] == [(4, 0.25), (4, 0.5)]
    assert reliability_bins([0.0], [False])[0]["low"] == 0.0, "confidence 0 falls in the first bin"
    with pytest.raises(ValueError):
        expected_calibration_error([], [])


def test_calibration_ece_on_hand_made_inputs():
    assert calibration([0.8] * 10, [1] * 8 + [0] * 2)["ece"] == pytest.approx(0.0)
    assert calibration([1.0] * 10, [1, 0] * 5)["ece"] == pytest.approx(0.5)
    # half the items at 0.9 all right (gap 0.1), half at 0.3 all wrong (gap 0.3): ECE = (0.1 + 0.3) / 2
    result = calibration([0.9] * 5 + [0.3] * 5, [1] * 5 + [0] * 5)
    assert result["ece"] == pytest.approx(0.2)
    assert [(b["n"], b["accuracy"]) for b in result["bins"]] == [(5, 0.0), (5, 1.0)]


def test_bootstrap_ci_covers_the_true_mean_in_most_seeds():
    covered = 0
    for seed in range(100):
        sample = np.random.default_rng(1000 + seed).binomial(1, 0.3, size=200)
        low, high = bootstrap_ci(sample, seed=seed)
        covered += low <= 0.3 <= high
    assert 88 <= covered <= 99
    assert bootstrap_ci([1.0]) is None
    low, high = bootstrap_ci([1, 1, 0, 0], [1, 1, 1, 1])  # macro mean 0.75, the second group never varies
    assert 0.5 <= low <= 0.75 <= high <= 1.0
