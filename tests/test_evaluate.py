import json

import pytest

from medllm.evaluate import evaluate, mcnemar_exact, score, wilson_interval
from medllm.train import train


def test_score_counts_top_k_per_source():
    rankings = [["a", "b"], ["x", "b"], [], ["c"]]
    golds = ["a", "b", "b", "d"]
    result = score(rankings, golds, ["hpo", "hpo", "common", "common"])
    assert result["all"]["n"] == 4
    assert result["all"]["top1"]["hits"] == 1
    assert result["all"]["top5"]["hits"] == 2
    assert result["hpo"]["top5"]["accuracy"] == 1.0
    assert result["common"]["top5"]["accuracy"] == 0.0
    assert result["all"]["answered"] == 0.75


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


def test_retrieval_only_needs_no_model(tiny_dataset):
    config = tiny_dataset.model_copy(update={"eval": tiny_dataset.eval.model_copy(update={"conditions": ["retrieval"]})})
    metrics = evaluate(config)
    block = metrics["conditions"]["retrieval"]["all"]
    assert block["n"] == metrics["n"] == 8
    assert block["top1"]["accuracy"] <= block["top5"]["accuracy"]
    assert "protocol" in metrics
    assert set(metrics["retrievers"]) == {"bm25", "dense", "hybrid"}
    assert metrics["retrievers"]["hybrid"]["all"] == block, "the dataset's candidates come from the hybrid retriever"
    assert "## Retrieval methods" in (config.output_dir / "eval" / "report.md").read_text()


def test_all_conditions_on_a_tiny_model(tiny_dataset):
    train(tiny_dataset)
    metrics = evaluate(tiny_dataset)
    assert set(metrics["conditions"]) == {"retrieval", "base_rag", "finetuned_rag", "base_closed_book"}
    out = tiny_dataset.output_dir / "eval"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == 8 and saved["conditions"]["base_rag"]["all"]["n"] == 8
    assert 0 <= saved["finetuned_vs_base_rag"]["top1"]["p_value"] <= 1
    report = (out / "report.md").read_text()
    assert "| finetuned_rag |" in report and "Protocol:" in report
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 8 and "finetuned_rag_answer" in json.loads(predictions[0])
