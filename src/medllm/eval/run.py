"""``medllm eval``: diagnosis accuracy on held-out cases, safety, medical benchmarks, Q&A, one report.

The model is loaded once and every configured part scores it on its own
items: the diagnosis conditions (:mod:`medllm.eval.diagnosis`), with
``eval.safety`` the red-flag set (:mod:`medllm.eval.safety`), the
multiple-choice benchmarks of ``eval.benchmarks`` (:mod:`medllm.eval.mcq`),
with ``eval.qa_source`` free-text question answering (:mod:`medllm.eval.qa`),
and with ``eval.phenopackets`` phenotype-only ranking of real published cases
(:mod:`medllm.eval.phenopackets`), re-ranked by the model with ``rerank.eval``. Base and fine-tuned model (with
``finetuned_rag`` in ``eval.conditions``) are scored on the same items. The
metrics, the predictions and the report (:mod:`medllm.eval.report`) go to
``<run>/eval/``.
"""

from __future__ import annotations

from pathlib import Path

from medllm.config import Config
from medllm.eval.diagnosis import LLM_CONDITIONS, evaluate_diagnosis, load_cases
from medllm.eval.mcq import evaluate_benchmarks
from medllm.eval.phenopackets import evaluate_phenopackets
from medllm.eval.qa import evaluate_qa
from medllm.eval.report import render_report, write_figures
from medllm.eval.safety import evaluate_safety
from medllm.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from medllm.models import load_model, load_tokenizer
from medllm.run import require_adapter

# metrics.json section -> (whether the eval config asks for it, its evaluator). Each evaluator is
# (model, tokenizer, config, models) -> (metrics, prediction rows, or rows per name for one file each)
SECTIONS = {
    "safety": (lambda cfg: cfg.safety, evaluate_safety),
    "benchmarks": (lambda cfg: cfg.benchmarks, evaluate_benchmarks),
    "qa": (lambda cfg: cfg.qa_source, evaluate_qa),
    "phenopackets": (lambda cfg: cfg.phenopackets, evaluate_phenopackets),
}
MODEL_FREE = {"phenopackets"}  # sections that need no model (given model=None when none is loaded for the others)


def _prediction_files(section: str, rows: list[dict] | dict[str, list[dict]]) -> dict[str, list[dict]]:
    """``<section>_predictions.jsonl``, or ``<name>_predictions.jsonl`` per name of rows given by name."""
    by_name = rows if isinstance(rows, dict) else {section: rows}
    return {f"{name}_predictions.jsonl": r for name, r in by_name.items()}


def evaluate(config: Config, adapter: Path | None = None) -> dict:
    """Score every configured part; write ``eval/metrics.json``, the predictions, the figures and ``eval/report.md``."""
    cfg = config.eval
    cases, index = load_cases(config)  # before the model, so a missing or empty split fails at once
    adapter = config.run.adapter_or_default(adapter)
    # the models every model-scored part (conditions, benchmarks, safety, Q&A) compares
    models = ["base", "finetuned"] if "finetuned_rag" in cfg.conditions else ["base"]
    if "finetuned" in models:
        require_adapter(adapter, ": run `medllm train` first or drop finetuned_rag from eval.conditions")
    model = tokenizer = None
    model_sections = (wanted(cfg) for section, (wanted, _) in SECTIONS.items() if section not in MODEL_FREE)
    reranks = cfg.phenopackets is not None and config.rerank.eval  # the phenopackets' re-rankers need the model
    if set(cfg.conditions) & LLM_CONDITIONS.keys() or any(model_sections) or reranks:
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, adapter if "finetuned" in models else None)

    diagnosis, predictions = evaluate_diagnosis(model, tokenizer, config, cases, index)
    sections, files = {}, {"predictions.jsonl": predictions}
    for section, (wanted, evaluator) in SECTIONS.items():
        sections[section] = None
        if wanted(cfg):
            sections[section], rows = evaluator(model, tokenizer, config, models)
            files.update(_prediction_files(section, rows))
    metrics = {
        # the run's model and adapter follow the diagnosis protocol, n and split, as metrics.json has always listed them
        **{key: diagnosis[key] for key in ("protocol", "n", "split")},
        "model": config.model.name,
        "adapter": str(adapter) if "finetuned" in models else None,
        **diagnosis,
        **sections,
    }
    out = config.run.eval
    figures = write_figures(metrics, out, config.run.metrics_csv)
    atomic_write_json(config.run.eval_metrics, metrics)
    for name, rows in files.items():
        atomic_write_jsonl(out / name, rows)
    atomic_write_text(out / "report.md", render_report(metrics, predictions, figures))
    return metrics
