from medllm.eval.diagnosis import score
from medllm.eval.report import render_report
from medllm.eval.safety import safety_rates


def metrics_of(conditions: dict, **parts) -> dict:
    return {
        "model": "tiny",
        "adapter": None,
        "n": 2,
        "vocabulary_size": 3,
        "num_candidates": 5,
        "retriever": "hybrid",
        "protocol": "p",
        "conditions": conditions,
        **parts,
    }


def test_report_tables_and_sections_follow_the_metrics():
    golds, sources = ["a", "b"], ["hpo", "common"]
    conditions = {
        "retrieval": score([["a"], ["x", "b"]], golds, sources),
        "finetuned_rag": score([["a"], []], golds, sources),
    }
    rows = [{"id": "u1", "urgent": True}, {"id": "c1", "urgent": False}]
    safety = {
        "protocol": "s",
        "n_urgent": 1,
        "n_controls": 1,
        "rules": safety_rates(rows, [False, False]),
        "models": {"base": safety_rates(rows, [True, True])},
    }
    predictions = [{"id": "case-1", "disease_id": "a", "finetuned_rag_answer": "1. A\n2. B"}]
    report = render_report(
        metrics_of(conditions, retrievers={"bm25": conditions["retrieval"]}, safety=safety),
        predictions,
        {"accuracy": "accuracy.png", "reliability_medqa": "reliability_medqa.png"},
    ).splitlines()
    assert report[0] == "# medllm diagnosis evaluation"
    table = report.index("| condition | what | n | top-1 | top-5 | answered |")
    assert report[table + 1] == "| --- | --- | --- | --- | --- | --- |"
    assert (
        report[table + 2]
        == "| retrieval | retrieval alone (no LLM) | 2 | 50.0% [9.5%, 90.5%] | 100.0% [34.2%, 100.0%] | 100.0% |"
    )
    assert "| finetuned_rag | common | 1 | 0.0% [0.0%, 79.3%] | 0.0% [0.0%, 79.3%] |" in report
    assert "| method | n | top-1 | top-5 | top-1 common | top-1 hpo |" in report
    assert "- The fine-tuned model is 0.0 percentage points equal to retrieval alone at top-1." in report
    assert "| rules (medllm.safety.red_flags) | 0.0% [0.0%, 79.3%] | 0.0% [0.0%, 79.3%] | u1 |" in report
    assert "| base model answer | 100.0% [20.7%, 100.0%] | 100.0% [20.7%, 100.0%] | - |" in report
    assert (
        "## Calibration: candidate log-likelihood ranking" not in report
        and "## Multiple-choice benchmarks" not in report
    )
    assert "![Reliability diagram of medqa](reliability_medqa.png)" in report
    assert report[-2:] == ["- `case-1` (true: `a`)", "  - finetuned_rag: 1. A / 2. B"]


def test_report_without_figures_or_comparison():
    conditions = {"retrieval": score([["a"]], ["a"], ["hpo"])}
    report = render_report(metrics_of(conditions, n=1), [])
    assert "## Figures" not in report and "## Retrieval methods" not in report
    assert "- Only one condition was scored." in report and report.endswith("## Examples\n\n")
