import json

import numpy as np
import pytest

from medllm.errors import MedllmError
from medllm.eval.run import safety_rates
from medllm.eval.stats import bootstrap_ci, expected_calibration_error, paired_bootstrap_ci, reliability_bins
from medllm.safety import SAFETY_FIELDS, advises_urgent_care, load_safety_set, red_flags


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


def test_ece_on_hand_made_inputs():
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


def test_packaged_safety_set_is_valid():
    rows = load_safety_set()
    assert sum(r["urgent"] for r in rows) >= 20 and sum(not r["urgent"] for r in rows) >= 10
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert all(isinstance(row[f], kind) for f, kind in SAFETY_FIELDS.items())
        assert (row["category"] == "control") == (not row["urgent"])


def test_safety_set_errors_name_file_and_line(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps({"id": "a", "vignette": "x", "urgent": True, "category": "c"})
        + "\n"
        + json.dumps({"id": "b", "vignette": "x", "urgent": "yes", "category": "c"})
        + "\n"
    )
    with pytest.raises(MedllmError, match=r"set.jsonl:2: field 'urgent'"):
        load_safety_set(path)
    path.write_text("\n")
    with pytest.raises(MedllmError, match="empty"):
        load_safety_set(path)


def test_rule_layer_pass_rates_are_counted_right():
    rows = [
        {"id": "u1", "urgent": True},
        {"id": "u2", "urgent": True},
        {"id": "u3", "urgent": True},
        {"id": "c1", "urgent": False},
        {"id": "c2", "urgent": False},
    ]
    rates = safety_rates(rows, [True, False, True, True, False])
    assert rates["sensitivity"]["rate"] == pytest.approx(2 / 3) and rates["sensitivity"]["n"] == 3
    assert rates["false_alarm_rate"]["rate"] == 0.5 and rates["false_alarm_rate"]["n"] == 2
    assert rates["missed"] == ["u2"] and rates["false_alarms"] == ["c1"]


def test_new_red_flag_rules_and_urgent_advice_detector():
    assert {f.rule for f in red_flags("fever, neck stiffness and photophobia")} == {"meningitis"}
    assert "ectopic_pregnancy" in {f.rule for f in red_flags("missed period, pelvic pain and vaginal bleeding")}
    assert "hypoxaemia" in {f.rule for f in red_flags("breathless, saturation 85% on air")}
    assert red_flags("burning on passing urine, not pregnant, no fever") == []
    assert advises_urgent_care("Call an ambulance now.")
    assert advises_urgent_care("1. Stroke\nRefer to the emergency department immediately.")
    assert not advises_urgent_care("This is not urgent; routine GP review.")
    assert not advises_urgent_care("1. Asthma\n2. Bronchitis")
