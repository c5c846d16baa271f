import json

from medllm.eval.run import evaluate
from medllm.train.recipe import train


def test_retrieval_only_needs_no_model(tiny_dataset, monkeypatch):
    config = tiny_dataset.model_copy(
        update={
            "eval": tiny_dataset.eval.model_copy(
                update={"conditions": ["retrieval"], "safety": False, "benchmarks": []}
            ),
            "rerank": tiny_dataset.rerank.model_copy(update={"eval": False}),
        }
    )
    monkeypatch.setattr("medllm.eval.run.load_model", None)  # calling it would fail the test
    metrics = evaluate(config)
    assert metrics["phenopackets"]["rerank"] is None
    block = metrics["conditions"]["retrieval"]["all"]
    assert block["n"] == metrics["n"] == 8
    assert block["top1"]["accuracy"] <= block["top5"]["accuracy"]
    assert "protocol" in metrics
    assert set(metrics["retrievers"]) == {"bm25", "dense", "hybrid"}
    assert metrics["retrievers"]["hybrid"]["all"] == block, "the dataset's candidates come from the hybrid retriever"
    assert "## Retrieval methods" in (config.output_dir / "eval" / "report.md").read_text()


def test_the_phenopacket_re_rankers_load_the_model_without_any_model_condition(tiny_dataset):
    config = tiny_dataset.model_copy(
        update={
            "eval": tiny_dataset.eval.model_copy(
                update={"conditions": ["retrieval"], "safety": False, "benchmarks": []}
            )
        }
    )
    rerank = evaluate(config)["phenopackets"]["rerank"]
    assert set(rerank["models"]) == {"base"} and rerank["fit_n"] == 4  # no finetuned_rag: the base model alone


def test_all_conditions_on_a_tiny_model(tiny_dataset):
    train(tiny_dataset)
    config = tiny_dataset.model_copy(update={"eval": tiny_dataset.eval.model_copy(update={"safety_max_new_tokens": 8})})
    metrics = evaluate(config)
    assert set(metrics["conditions"]) == {"retrieval", "base_rag", "finetuned_rag", "base_closed_book"}
    out = tiny_dataset.output_dir / "eval"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == 8 and saved["conditions"]["base_rag"]["all"]["n"] == 8
    assert 0 <= saved["finetuned_vs_base_rag"]["top1"]["p_value"] <= 1
    report = (out / "report.md").read_text()
    assert "| finetuned_rag |" in report and "Protocol:" in report
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 8 and "finetuned_rag_answer" in json.loads(predictions[0])

    top1 = saved["conditions"]["base_rag"]["all"]["top1"]
    low, high = top1["bootstrap_ci95"]
    assert low <= top1["accuracy"] <= high
    difference = saved["finetuned_vs_base_rag"]["top1"]
    assert (
        difference["n"] == 8
        and difference["bootstrap_ci95"][0] <= difference["difference"] <= difference["bootstrap_ci95"][1]
    )
    calibrated = saved["calibration"]["conditions"]
    assert set(calibrated) == {"base_rag", "finetuned_rag"} and calibrated["base_rag"]["n"] == 8
    assert 0 <= calibrated["finetuned_rag"]["ece"] <= 1
    row = json.loads(predictions[0])
    assert 1 / 5 <= row["base_rag_confidence"] <= 1, "softmax over the 5 shown candidates"
    safety = saved["safety"]
    assert set(safety["models"]) == {"base", "finetuned"}
    assert safety["rules"]["sensitivity"]["n"] == safety["n_urgent"] >= 20
    assert safety["models"]["base"]["false_alarm_rate"]["n"] == safety["n_controls"] >= 10
    assert len((out / "safety_predictions.jsonl").read_text().splitlines()) == safety["n_urgent"] + safety["n_controls"]
    for figure in ("accuracy.png", "reliability.png", "training.png"):
        assert (out / figure).read_bytes().startswith(b"\x89PNG") and f"]({figure})" in report
    assert "## Calibration" in report and "## Red-flag safety set" in report
    mmlu = saved["benchmarks"]["mmlu_medical"]
    assert mmlu["base"]["n"] == mmlu["finetuned"]["n"] == 8 and mmlu["sampled_from"] == 1089
    assert mmlu["finetuned_vs_base"]["n"] == 8
    assert len((out / "mmlu_medical_predictions.jsonl").read_text().splitlines()) == 8
    assert "## Multiple-choice benchmarks" in report and "seeded sample of 1089" in report
    assert (out / "reliability_mmlu_medical.png").read_bytes().startswith(b"\x89PNG")
    # the recipe's real published cases: the packaged sample's test part, every case in the predictions
    real = saved["phenopackets"]
    assert real["n"] == real["methods"][real["served"]]["n"] > 0 and real["source"]["part"] == "test"
    assert len((out / "phenopackets_predictions.jsonl").read_text().splitlines()) == real["n"]
    assert "## Real published cases (phenopackets)" in report
    # the model re-ranking the served ranking's top K: both models fitted on dev cases and saved for serve
    rerank = real["rerank"]
    assert set(rerank["models"]) == {"base", "finetuned"} and rerank["fit_n"] == 4
    assert all(block["method"] in real["methods"] for block in rerank["models"].values())
    assert set(json.loads(tiny_dataset.run.rerank.read_text())["fits"]) == {"base", "finetuned"}
