"""data → train → eval on the embedded SmolLM2-135M-Instruct, a few steps."""

import json

import pytest

from medllm.cli import main

pytestmark = pytest.mark.integration


def test_embedded_model_end_to_end(tmp_path, capsys):
    overrides = [
        "--output_dir",
        str(tmp_path / "run"),
        "--data.hpo_diseases",
        "5",
        "--data.common_diseases",
        "false",
        "--train.max_steps",
        "2",
        "--train.save_steps",
        "2",
        "--train.eval_steps",
        "2",
        "--train.eval_max_samples",
        "2",
        "--train.per_device_train_batch_size",
        "2",
        "--eval.max_cases",
        "4",
        "--eval.batch_size",
        "4",
        "--eval.max_new_tokens",
        "24",
        "--eval.benchmark_max_items",
        "8",
        "--eval.safety_max_new_tokens",
        "8",
        "--train.eval_accuracy_samples",
        "4",
        "--eval.phenopackets_max_cases",
        "8",
        "--rerank.fit_max_cases",
        "4",
    ]
    assert main(["demo", *overrides]) == 0
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["model"] == "smollm2-135m-instruct"
    assert metrics["benchmarks"]["mmlu_medical"]["finetuned"]["n"] == 8 and metrics["safety"]["models"]
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert metrics["phenopackets"]["source"]["part"] == "test" and metrics["phenopackets"]["n"] > 0
    out = capsys.readouterr().out
    assert "finetuned_rag" in out and "real published cases (test part" in out and "report:" in out
