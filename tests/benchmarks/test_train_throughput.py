"""The training benchmark's two paths agree (a smoke run on a tiny random Llama shape; no timing asserted)."""

import importlib
import json

from conftest import REPO


def test_baseline_and_medllm_paths_score_the_same_examples_alike(tiny_llama_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # importable by name: each path runs in a spawned process

    shapes = tmp_path / "shapes"
    (shapes / "tokenizer").mkdir(parents=True)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(shapes / "tokenizer")
    lengths = [[40 + 7 * (i % 5), 10 + 3 * (i % 4)] for i in range(40)]  # (prompt, answer) tokens
    (shapes / "lengths.json").write_text(json.dumps({"train": lengths}))
    summary = importlib.import_module("train_throughput").main(
        [
            "--shape",
            "mini",
            "--shapes-dir",
            str(shapes),
            "--steps",
            "1",
            "--warmup",
            "1",
            "--examples",
            "24",
            "--profile",
            str(tmp_path / "profile"),
            "--out",
            str(tmp_path / "out.json"),
        ]
    )
    results = summary["results"]
    assert set(results) == {"baseline", "trl", "medllm", "medllm_packed"} and not any(
        "error" in r for r in results.values()
    )
    assert summary["losses_agree"], [r["loss_before"] for r in results.values()]
    assert results["medllm_packed"]["pad_share"] == 0 and results["baseline"]["pad_share"] > 0
    assert all(r["tokens_per_s"] > 0 and r["real_tokens"] > 0 for r in results.values())
    assert json.loads((tmp_path / "out.json").read_text())["model"] == "mini"
    assert "aten::mm" in (tmp_path / "profile" / "medllm.txt").read_text()
    packed, plain = results["medllm_packed"], results["medllm"]
    assert 0 < plain["estimate_gib"] < plain["peak_rss_mb"] / 1024 and packed["estimate_gib"] > 0, (
        "the memory guard's estimate for the largest batch is reported beside the measured peak"
    )
