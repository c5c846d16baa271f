"""The memory guard's estimate is not below the measured peak of a training step (tiny Llama, CPU profiler)."""

import importlib

from conftest import REPO


def test_estimate_covers_the_measured_peak_of_a_step(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # importable by name: each batch runs in a spawned process
    summary = importlib.import_module("memory_guard").main(
        [
            "--model",
            tiny_dataset.model.name,
            "--data",
            str(tiny_dataset.data_dir),
            "--batch",
            "1",
            "4",
            "--out",
            str(tmp_path / "memory_guard.json"),
        ]
    )
    rows = summary["results"]
    assert [r["batch"] for r in rows] == [1, 4] and rows[1]["tokens"] > rows[0]["tokens"]
    assert rows[1]["measured_gib"] > rows[0]["measured_gib"] > 0
    for r in rows:  # the guard stops a run that would not fit only if it does not under-estimate
        assert 1.0 <= r["estimate_over_measured"] <= 1.6, r
