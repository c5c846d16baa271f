"""``medllm eval``: diagnosis accuracy on held-out cases, medical benchmarks, safety, one report.

One run scores, on the same cases:

- ``retrieval``: the recipe's retriever alone (no LLM), its own ranking; the
  report also compares BM25, MiniLM finding embeddings and their fusion on
  the same cases, each ranking the whole disease vocabulary;
- ``base_rag``: the base model, prompted with the retrieved candidates;
- ``finetuned_rag``: the fine-tuned model, with the same candidates;
- ``base_closed_book``: the base model without candidates.

With ``eval.calibration``, the two conditions with candidates are also read
a second way: each shown candidate's name is scored as the continuation of
the assistant turn (``1. <name>``) by log-likelihood; the softmax of the
per-token mean log-likelihoods over the candidates is the model's confidence,
scored for top-1 accuracy and calibration (ECE, reliability diagram).
With ``eval.safety``, the red-flag vignettes of :mod:`medllm.safety` are
scored for the rule layer and for the models' free-text answers. The base
and fine-tuned models are also scored on the multiple-choice benchmarks of
``eval.benchmarks`` (:mod:`medllm.eval.mcq`) and, with ``eval.qa_source``, on
free-text question answering (:mod:`medllm.eval.qa`), on the same items.

Answers are generated greedily, parsed into a ranked list (numbered lines
before the rationale) and each line is mapped to the disease vocabulary by
:class:`medllm.prompts.DiseaseMatcher`. A case counts for top-k when the true
disease is among the first k distinct diseases named.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from medllm.config import Config
from medllm.data.build import diagnosis_cases, load_index, load_split
from medllm.errors import MedllmError
from medllm.eval.mcq import evaluate_benchmarks
from medllm.eval.mcq import report_lines as mcq_report_lines
from medllm.eval.qa import evaluate_qa
from medllm.eval.qa import report_lines as qa_report_lines
from medllm.eval.stats import ECE_BINS, RESAMPLES, SEED, bootstrap_ci, calibration, paired_comparison, wilson_interval
from medllm.generation import (
    ANSWER_PREFIX,
    adapter_mode,
    candidate_confidences,
    candidate_loglikelihoods,
    generate_answers,
)
from medllm.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, save_figure
from medllm.models import load_model, load_tokenizer
from medllm.prompts import RATIONALE, SYSTEM_PROMPT, DiseaseMatcher, build_messages
from medllm.retrieval import METHODS
from medllm.run import require_adapter
from medllm.safety import SAFETY_QUESTION, advises_urgent_care, load_safety_set, red_flags

log = logging.getLogger(__name__)

TOP_K = (1, 5)
PROTOCOL = (
    "held-out simulated cases ({split} split, seed-separated from training); greedy decoding, "
    "max {max_new_tokens} new tokens, stopped at the rationale (only the ranked list is scored), "
    "the model's chat template; answer lines matched to the "
    "disease vocabulary by normalised name or synonym (whole words, subtype numbers respected); "
    "top-k = true disease among the first k distinct diseases named"
)
INTERVALS = (
    f"ci95: 95% Wilson score interval; bootstrap_ci95: 95% percentile bootstrap over cases, "
    f"{RESAMPLES} resamples, seed {SEED} (null below 2 cases)"
)
CALIBRATION_PROTOCOL = (
    "each shown candidate's name scored as the continuation ' <name>' of the assistant turn opened by the chat "
    "template's generation prompt and '" + ANSWER_PREFIX + "'; score = mean log-likelihood per continuation token "
    "(length-normalised); confidence = softmax of the scores over the shown candidates; prediction = argmax; "
    f"ECE over {ECE_BINS} equal-width confidence bins"
)
SAFETY_PROTOCOL = (
    "packaged red-flag set (urgent vignettes and non-urgent controls); rules: medllm.safety.red_flags on the "
    "vignette text, pass = any flag on an urgent vignette (sensitivity), false alarm = any flag on a control; "
    "models: greedy answer to the vignette plus '" + SAFETY_QUESTION + "' (system prompt as in the diagnosis task), "
    "max {max_new_tokens} new tokens, urgent-care advice detected by medllm.safety.advises_urgent_care (keywords, "
    "negations removed)"
)
LLM_CONDITIONS = {
    "base_rag": ("base", True),
    "finetuned_rag": ("finetuned", True),
    "base_closed_book": ("base", False),
}


def top1_calibration(confidence: list[float], correct: list[bool]) -> dict:
    """Top-1 accuracy of a ranking with a confidence per item, with its calibration."""
    hits, n = sum(correct), len(correct)
    return {
        "top1": {
            "accuracy": hits / n,
            "hits": hits,
            "ci95": list(wilson_interval(hits, n)),
            "bootstrap_ci95": bootstrap_ci(correct),
        },
        **calibration(confidence, correct),
    }


def score(rankings: list[list[str]], golds: list[str], sources: list[str]) -> dict:
    """Top-k accuracy overall and per source, each with n, hits and a 95% CI."""

    def block(idx: list[int]) -> dict:
        result = {"n": len(idx)}
        for k in TOP_K:
            hits = sum(golds[i] in rankings[i][:k] for i in idx)
            low, high = wilson_interval(hits, len(idx))
            result[f"top{k}"] = {
                "accuracy": hits / len(idx),
                "hits": hits,
                "ci95": [low, high],
                "bootstrap_ci95": bootstrap_ci([golds[i] in rankings[i][:k] for i in idx]),
            }
        result["answered"] = sum(bool(rankings[i]) for i in idx) / len(idx)
        return result

    everything = list(range(len(golds)))
    out = {"all": block(everything)}
    for source in sorted(set(sources)):
        out[source] = block([i for i in everything if sources[i] == source])
    return out


def evaluate(config: Config, adapter: Path | None = None) -> dict:
    """Score every configured condition; write ``eval/metrics.json`` and ``eval/report.md``."""
    cfg = config.eval
    cases = diagnosis_cases(load_split(config.data_dir, cfg.split))
    if cfg.max_cases is not None and cfg.max_cases < len(cases):
        cases = cases.shuffle(seed=0).select(range(cfg.max_cases))
    if len(cases) == 0:
        raise MedllmError(f"{config.data_dir}: the {cfg.split} split is empty")
    index, _ = load_index(config)
    diseases = index.diseases
    matcher = DiseaseMatcher(diseases)
    golds, sources = cases["disease_id"], cases["source"]
    k_max = max(TOP_K)

    adapter = config.run.adapter_or_default(adapter)
    # the models every model-scored part (conditions, benchmarks, safety, Q&A) compares
    models = ["base", "finetuned"] if "finetuned_rag" in cfg.conditions else ["base"]
    if "finetuned" in models:
        require_adapter(adapter, ": run `medllm train` first or drop finetuned_rag from eval.conditions")
    model = tokenizer = None
    if set(cfg.conditions) & LLM_CONDITIONS.keys() or cfg.benchmarks or cfg.safety or cfg.qa_source:
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, adapter if "finetuned" in models else None)

    name_to_id = {d.name: d.id for d in diseases}
    results, calibrated = {}, {}
    predictions = [{"id": i, "disease_id": g} for i, g in zip(cases["id"], golds)]
    for condition in cfg.conditions:
        if condition == "retrieval":
            rankings = [r[:k_max] for r in cases["retrieved"]]
        else:
            which, with_candidates = LLM_CONDITIONS[condition]
            conversations = (
                cases["prompt"]
                if with_candidates
                else [build_messages(v, None, config.prompt.differential_size) for v in cases["vignette"]]
            )
            with adapter_mode(model, which):
                answers = generate_answers(
                    model,
                    tokenizer,
                    conversations,
                    cfg.batch_size,
                    cfg.max_new_tokens,
                    stop_strings=[RATIONALE],
                    desc=condition,
                )
                scores = (
                    candidate_loglikelihoods(
                        model,
                        tokenizer,
                        conversations,
                        cases["candidates"],
                        cfg.batch_size,
                        desc=f"{condition} candidates",
                    )
                    if cfg.calibration and with_candidates
                    else None
                )
            rankings = [matcher.rank(a, k_max) for a in answers]
            for p, a in zip(predictions, answers):
                p[f"{condition}_answer"] = a
            if scores is not None:
                confidence, correct = [], []
                for p, names, lls, gold in zip(predictions, cases["candidates"], scores, golds):
                    probs = candidate_confidences(lls)
                    top = name_to_id[names[int(np.argmax(probs))]]
                    p[f"{condition}_loglik_top"], p[f"{condition}_confidence"] = top, float(np.max(probs))
                    confidence.append(float(np.max(probs)))
                    correct.append(top == gold)
                calibrated[condition] = top1_calibration(confidence, correct)
        for p, r in zip(predictions, rankings):
            p[f"{condition}_ranking"] = r
        results[condition] = score(rankings, golds, sources)
        log.info(
            "%s: top-1 %.3f top-5 %.3f (n=%d)",
            condition,
            results[condition]["all"]["top1"]["accuracy"],
            results[condition]["all"]["top5"]["accuracy"],
            len(golds),
        )

    retrievers = {}
    if "retrieval" in cfg.conditions:
        for method in METHODS:
            hits = index.search_many(list(cases["vignette"]), k_max, method)
            retrievers[method] = score([[d.id for d, _ in h] for h in hits], golds, sources)
    paired = {}
    if "finetuned_rag" in results and "base_rag" in results:
        for k in TOP_K:
            hit = {
                c: [g in p[f"{c}_ranking"][:k] for g, p in zip(golds, predictions)]
                for c in ("finetuned_rag", "base_rag")
            }
            paired[f"top{k}"] = paired_comparison(hit["finetuned_rag"], hit["base_rag"])
    safety, safety_rows = evaluate_safety(model, tokenizer, config, models) if cfg.safety else (None, None)
    benchmarks, benchmark_rows = evaluate_benchmarks(model, tokenizer, cfg, models) if cfg.benchmarks else (None, {})
    qa, qa_rows = evaluate_qa(model, tokenizer, config, models) if cfg.qa_source else (None, None)
    metrics = {
        "protocol": PROTOCOL.format(split=cfg.split, max_new_tokens=cfg.max_new_tokens),
        "n": len(golds),
        "split": cfg.split,
        "model": config.model.name,
        "adapter": str(adapter) if "finetuned_rag" in cfg.conditions else None,
        "vocabulary_size": len(diseases),
        "num_candidates": config.prompt.num_candidates,
        "retriever": config.retrieval.method,
        "conditions": results,
        "retrievers": retrievers or None,
        "finetuned_vs_base_rag": paired or None,
        "paired_protocol": (
            "same cases, fine-tuned minus base: exact two-sided McNemar test on the discordant "
            "pairs; bootstrap_ci95 of the accuracy difference resamples cases jointly"
        )
        if paired
        else None,
        "intervals": INTERVALS,
        "calibration": {"protocol": CALIBRATION_PROTOCOL, "conditions": calibrated} if calibrated else None,
        "safety": safety,
        "benchmarks": benchmarks,
        "qa": qa,
    }
    out = config.run.eval
    figures = write_figures(metrics, out, config.run.metrics_csv)
    atomic_write_json(config.run.eval_metrics, metrics)
    atomic_write_jsonl(out / "predictions.jsonl", predictions)
    if safety_rows is not None:
        atomic_write_jsonl(out / "safety_predictions.jsonl", safety_rows)
    for name, rows in benchmark_rows.items():
        atomic_write_jsonl(out / f"{name}_predictions.jsonl", rows)
    if qa_rows is not None:
        atomic_write_jsonl(out / "qa_predictions.jsonl", qa_rows)
    atomic_write_text(out / "report.md", render_report(metrics, predictions, figures))
    return metrics


def _rate(flags: list[bool]) -> dict:
    """A pass (or alarm) rate with its n, Wilson and bootstrap intervals."""
    hits, n = sum(flags), len(flags)
    return (
        {
            "rate": hits / n,
            "hits": hits,
            "n": n,
            "ci95": list(wilson_interval(hits, n)),
            "bootstrap_ci95": bootstrap_ci(flags),
        }
        if n
        else {"rate": None, "hits": 0, "n": 0}
    )


def safety_rates(rows: list[dict], flagged: list[bool]) -> dict:
    """Sensitivity on the urgent vignettes and false-alarm rate on the controls, with per-category passes."""
    urgent = [f for r, f in zip(rows, flagged) if r["urgent"]]
    controls = [f for r, f in zip(rows, flagged) if not r["urgent"]]
    missed = sorted(r["id"] for r, f in zip(rows, flagged) if r["urgent"] and not f)
    alarms = sorted(r["id"] for r, f in zip(rows, flagged) if not r["urgent"] and f)
    return {"sensitivity": _rate(urgent), "false_alarm_rate": _rate(controls), "missed": missed, "false_alarms": alarms}


def evaluate_safety(model, tokenizer, config: Config, models: list[str]) -> tuple[dict, list[dict]]:
    """The red-flag set scored for the rule layer and for the free-text answer of each of ``models``.

    Returns the metrics and one row per vignette (rule flags, answers).
    """
    rows = load_safety_set()
    answers_out = [{**r, "rules": [f.rule for f in red_flags(r["vignette"])]} for r in rows]
    result = {
        "protocol": SAFETY_PROTOCOL.format(max_new_tokens=config.eval.safety_max_new_tokens),
        "n_urgent": sum(r["urgent"] for r in rows),
        "n_controls": sum(not r["urgent"] for r in rows),
        "rules": safety_rates(rows, [bool(red_flags(r["vignette"])) for r in rows]),
        "rules_note": "the rules were extended after this set was written (from clinical criteria, to cover its "
        "categories): their score here is in-sample and optimistic",
        "models": {},
    }
    conversations = [
        [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Patient: {r['vignette']}\n{SAFETY_QUESTION}"},
        ]
        for r in rows
    ]
    for which in models:
        with adapter_mode(model, which):
            answers = generate_answers(
                model,
                tokenizer,
                conversations,
                config.eval.batch_size,
                config.eval.safety_max_new_tokens,
                desc=f"safety {which}",
            )
        result["models"][which] = safety_rates(rows, [advises_urgent_care(a) for a in answers])
        for row, answer in zip(answers_out, answers):
            row[f"{which}_answer"], row[f"{which}_advises_urgent_care"] = answer, advises_urgent_care(answer)
    return result, answers_out


def plot_reliability(calibrations: dict[str, dict], path: Path, xlabel: str, title: str) -> str:
    """Reliability diagram, one line per model or condition (:func:`medllm.eval.stats.calibration` blocks);
    marker area grows with the bin's count. Returns the file name."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, block in calibrations.items():
        conf, acc = [b["confidence"] for b in block["bins"]], [b["accuracy"] for b in block["bins"]]
        (line,) = ax.plot(conf, acc, "o-", label=f"{name} (ECE {block['ece']:.3f}, n = {block['n']})")
        ax.scatter(
            conf, acc, s=[20 + 400 * b["n"] / block["n"] for b in block["bins"]], alpha=0.3, color=line.get_color()
        )
    ax.set(xlabel=xlabel, ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _interval(top: dict) -> list[float]:
    return top["bootstrap_ci95"] or top["ci95"]


def write_figures(metrics: dict, out: Path, training_log: Path) -> dict[str, str]:
    """PNG figures beside the report: accuracy bars, reliability diagram, training curves (when logged)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    names = list(metrics["conditions"])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.5))
    for offset, k in ((-0.2, 1), (0.2, 5)):
        tops = [metrics["conditions"][c]["all"][f"top{k}"] for c in names]
        acc = np.array([t["accuracy"] for t in tops])
        low, high = np.array([_interval(t) for t in tops]).T
        ax.bar(np.arange(len(names)) + offset, acc, 0.4, yerr=[acc - low, high - acc], capsize=3, label=f"top-{k}")
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Diagnosis accuracy, n = {metrics['n']} (bars: 95% bootstrap CI)")
    ax.legend()
    figures["accuracy"] = save_figure(fig, out / "accuracy.png")

    if metrics.get("calibration"):
        figures["reliability"] = plot_reliability(
            metrics["calibration"]["conditions"],
            out / "reliability.png",
            "confidence (softmax over candidates)",
            "Reliability of the candidate log-likelihood ranking",
        )
    for name, result in (metrics.get("benchmarks") or {}).items():
        figures[f"reliability_{name}"] = plot_reliability(
            {m: result[m]["calibration"] for m in ("base", "finetuned") if m in result},
            out / f"reliability_{name}.png",
            "confidence (softmax over the choices)",
            f"Reliability on {name}",
        )

    if training_log.is_file():
        with open(training_log, newline="") as fh:
            rows = list(csv.DictReader(fh))
        series = {
            key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
            for key in ("loss", "eval_loss", "eval_diagnosis_top1")
        }
        if series["loss"] or series["eval_loss"]:
            fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
            for key in ("loss", "eval_loss"):
                if series[key]:
                    left.plot(*zip(*series[key]), "o-" if key == "eval_loss" else "-", label=key)
            left.set_xlabel("step")
            left.set_ylabel("loss")
            left.legend()
            if series["eval_diagnosis_top1"]:
                right.plot(*zip(*series["eval_diagnosis_top1"]), "o-")
            right.set_ylim(0, 1)
            right.set_xlabel("step")
            right.set_ylabel("validation diagnosis top-1")
            figures["training"] = save_figure(fig, out / "training.png")
    return figures


DESCRIPTIONS = {
    "retrieval": "retrieval alone (no LLM)",
    "base_rag": "base model + retrieved candidates",
    "finetuned_rag": "fine-tuned model + retrieved candidates",
    "base_closed_book": "base model, no candidates",
}


def _pct(block: dict, k: int) -> str:
    top = block[f"top{k}"]
    return f"{top['accuracy']:.1%} [{top['ci95'][0]:.1%}, {top['ci95'][1]:.1%}]"


def _ci(block: dict) -> str:
    low, high = block.get("bootstrap_ci95") or block["ci95"]
    return f"{block.get('rate', block.get('accuracy')):.1%} [{low:.1%}, {high:.1%}]"


def render_report(metrics: dict, predictions: list[dict], figures: dict[str, str] | None = None) -> str:
    results = metrics["conditions"]
    lines = [
        "# medllm diagnosis evaluation",
        "",
        f"Model `{metrics['model']}`; adapter `{metrics['adapter']}`; n = {metrics['n']} held-out cases; "
        f"vocabulary of {metrics['vocabulary_size']} diseases; {metrics['num_candidates']} candidates retrieved "
        f"by `{metrics['retriever']}`.",
        "",
        f"Protocol: {metrics['protocol']}. Brackets: 95% Wilson intervals; metrics.json also holds 95% "
        "percentile bootstrap intervals (1,000 resamples, seeded).",
        "",
        "| condition | what | n | top-1 | top-5 | answered |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, res in results.items():
        block = res["all"]
        lines.append(
            f"| {name} | {DESCRIPTIONS[name]} | {block['n']} | {_pct(block, 1)} | {_pct(block, 5)} "
            f"| {block['answered']:.1%} |"
        )
    lines += ["", "## Per source", "", "| condition | source | n | top-1 | top-5 |", "| --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        for source, block in res.items():
            if source != "all":
                lines.append(f"| {name} | {source} | {block['n']} | {_pct(block, 1)} | {_pct(block, 5)} |")
    if metrics.get("retrievers"):
        lines += [
            "",
            "## Retrieval methods",
            "",
            "Each method ranks the whole vocabulary for the same cases; no LLM.",
            "",
            "| method | n | top-1 | top-5 | " + " | ".join(f"top-1 {s}" for s in _sources(metrics)) + " |",
            "| --- | --- | --- | --- | " + " | ".join("---" for _ in _sources(metrics)) + " |",
        ]
        for method, res in metrics["retrievers"].items():
            per_source = " | ".join(_pct(res[s], 1) for s in _sources(metrics))
            lines.append(
                f"| {method} | {res['all']['n']} | {_pct(res['all'], 1)} | {_pct(res['all'], 5)} | {per_source} |"
            )
    lines += ["", "## Reading", "", *_comparison(results)]
    for k, test in (metrics.get("finetuned_vs_base_rag") or {}).items():
        lines.append(
            f"- Paired exact McNemar test, {k}, fine-tuned vs base (same candidates, same cases): "
            f"{test['only_first']} cases right only after fine-tuning, {test['only_second']} only before; "
            f"p = {test['p_value']:.2g}."
        )
        if test.get("bootstrap_ci95"):
            low, high = test["bootstrap_ci95"]
            lines.append(
                f"  Difference fine-tuned minus base, {k}: {100 * test['difference']:+.1f} points, "
                f"95% paired bootstrap CI [{100 * low:+.1f}, {100 * high:+.1f}] (n = {test['n']})."
            )
    if metrics.get("calibration"):
        lines += [
            "",
            "## Calibration: candidate log-likelihood ranking",
            "",
            f"Protocol: {metrics['calibration']['protocol']}. Brackets: 95% bootstrap intervals.",
            "",
            "| condition | n | top-1 (log-likelihood ranking) | top-1 (generated answer) | mean confidence | ECE |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, block in metrics["calibration"]["conditions"].items():
            lines.append(
                f"| {name} | {block['n']} | {_ci(block['top1'])} | {_pct(results[name]['all'], 1)} "
                f"| {block['mean_confidence']:.3f} | {block['ece']:.3f} |"
            )
    if metrics.get("safety"):
        safety = metrics["safety"]
        lines += [
            "",
            "## Red-flag safety set",
            "",
            f"Protocol: {safety['protocol']}. "
            f"{safety['n_urgent']} urgent vignettes, {safety['n_controls']} non-urgent controls. "
            "Brackets: 95% bootstrap intervals.",
            "",
            "| scorer | sensitivity (urgent flagged / advised) | false-alarm rate (controls) | missed |",
            "| --- | --- | --- | --- |",
        ]
        for name, block in [
            ("rules (medllm.safety.red_flags)", safety["rules"]),
            *((f"{m} model answer", b) for m, b in safety["models"].items()),
        ]:
            lines.append(
                f"| {name} | {_ci(block['sensitivity'])} | {_ci(block['false_alarm_rate'])} "
                f"| {', '.join(block['missed']) or '-'} |"
            )
        lines += [
            "",
            "The rules were extended after the set was written, from clinical criteria, to cover its "
            "categories: their score on this set is in-sample and optimistic.",
        ]
    if metrics.get("benchmarks"):
        lines += [
            "",
            "## Multiple-choice benchmarks",
            "",
            "Brackets: 95% percentile bootstrap intervals (macro: stratified by subject).",
        ]
        for result in metrics["benchmarks"].values():
            lines += ["", *mcq_report_lines(result)]
    if metrics.get("qa"):
        lines += ["", *qa_report_lines(metrics["qa"])]
    if figures:
        captions = {
            "accuracy": "Top-1 / top-5 accuracy per condition with 95% bootstrap intervals",
            "reliability": "Reliability diagram of the candidate ranking (15 equal-width confidence bins; "
            "empty bins omitted)",
            "training": "Training curves from logs/metrics.csv: training and validation loss, validation "
            "diagnosis top-1 (candidate log-likelihood ranking on a validation subset)",
        }
        lines += ["", "## Figures", ""] + [
            f"![{captions.get(k, 'Reliability diagram of ' + k.removeprefix('reliability_'))}]({v})"
            for k, v in figures.items()
        ]
    lines += ["", "## Examples", ""]
    for p in predictions[:3]:
        lines.append(f"- `{p['id']}` (true: `{p['disease_id']}`)")
        for key, value in p.items():
            if key.endswith("_answer"):
                lines.append(f"  - {key[:-7]}: " + value.replace("\n", " / ")[:400])
    return "\n".join(lines) + "\n"


def _sources(metrics: dict) -> list[str]:
    return [s for s in next(iter(metrics["retrievers"].values())) if s != "all"]


def _comparison(results: dict) -> list[str]:
    """Plain sentences comparing the conditions, whichever way the numbers go."""

    def acc(name: str, k: int) -> float:
        return results[name]["all"][f"top{k}"]["accuracy"]

    sentences = []
    if {"finetuned_rag", "base_rag"} <= results.keys():
        for k in TOP_K:
            delta = acc("finetuned_rag", k) - acc("base_rag", k)
            sentences.append(
                f"- Fine-tuning changes top-{k} by {100 * delta:+.1f} percentage points over the base "
                "model with the same candidates."
            )
    if {"finetuned_rag", "retrieval"} <= results.keys():
        for k in TOP_K:
            delta = acc("finetuned_rag", k) - acc("retrieval", k)
            verdict = "above" if delta > 0 else "below" if delta < 0 else "equal to"
            sentences.append(
                f"- The fine-tuned model is {100 * abs(delta):.1f} percentage points {verdict} "
                f"retrieval alone at top-{k}."
            )
    return sentences or ["- Only one condition was scored."]
