import json

import pytest

from medllm.errors import MedllmError
from medllm.eval.safety import safety_rates
from medllm.safety import SAFETY_FIELDS, advises_urgent_care, load_safety_set, red_flags


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
