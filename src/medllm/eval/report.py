"""The evaluation's ``report.md`` and the PNG figures beside it, from :func:`medllm.eval.run.evaluate`'s metrics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medllm.eval.diagnosis import TOP_K
from medllm.eval.mcq import report_lines as mcq_report_lines
from medllm.eval.phenopackets import series_cell
from medllm.eval.qa import report_lines as qa_report_lines
from medllm.io import save_figure
from medllm.markdown import table

DESCRIPTIONS = {
    "retrieval": "retrieval alone (no LLM)",
    "base_rag": "base model + retrieved candidates",
    "finetuned_rag": "fine-tuned model + retrieved candidates",
    "base_closed_book": "base model, no candidates",
}
CAPTIONS = {
    "accuracy": "Top-1 / top-5 accuracy per condition with 95% bootstrap intervals",
    "reliability": "Reliability diagram of the candidate ranking (15 equal-width confidence bins; empty bins omitted)",
    "training": "Training curves from logs/metrics.csv: training and validation loss, validation "
    "diagnosis top-1 (candidate log-likelihood ranking on a validation subset)",
}


# ----------------------------------------------------------------------------- figures


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


def plot_accuracy(metrics: dict, path: Path) -> str:
    """Top-1 and top-5 bars per condition with their 95% intervals. Returns the file name."""
    import matplotlib.pyplot as plt

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
    return save_figure(fig, path)


def plot_training(training_log: Path, path: Path) -> str | None:
    """Loss and validation top-1 against the step, from the training log; None when it logged neither loss."""
    import matplotlib.pyplot as plt

    with open(training_log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    series = {
        key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        for key in ("loss", "eval_loss", "eval_diagnosis_top1")
    }
    if not (series["loss"] or series["eval_loss"]):
        return None
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
    return save_figure(fig, path)


def write_figures(metrics: dict, out: Path, training_log: Path) -> dict[str, str]:
    """PNG figures beside the report: accuracy bars, reliability diagrams, training curves (when logged)."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    figures = {"accuracy": plot_accuracy(metrics, out / "accuracy.png")}
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
    training = plot_training(training_log, out / "training.png") if training_log.is_file() else None
    if training:
        figures["training"] = training
    return figures


# ----------------------------------------------------------------------------- report sections


def _pct(block: dict, k: int) -> str:
    top = block[f"top{k}"]
    return f"{top['accuracy']:.1%} [{top['ci95'][0]:.1%}, {top['ci95'][1]:.1%}]"


def _ci(block: dict) -> str:
    low, high = block.get("bootstrap_ci95") or block["ci95"]
    return f"{block.get('rate', block.get('accuracy')):.1%} [{low:.1%}, {high:.1%}]"


def _overview(metrics: dict) -> list[str]:
    """Title, what was scored, and top-k per condition."""
    rows = []
    for name, res in metrics["conditions"].items():
        block = res["all"]
        rows.append([name, DESCRIPTIONS[name], block["n"], _pct(block, 1), _pct(block, 5), f"{block['answered']:.1%}"])
    return [
        "# medllm diagnosis evaluation",
        "",
        f"Model `{metrics['model']}`; adapter `{metrics['adapter']}`; n = {metrics['n']} held-out cases; "
        f"vocabulary of {metrics['vocabulary_size']} diseases; {metrics['num_candidates']} candidates retrieved "
        f"by `{metrics['retriever']}`.",
        "",
        f"Protocol: {metrics['protocol']}. Brackets: 95% Wilson intervals; metrics.json also holds 95% "
        "percentile bootstrap intervals (1,000 resamples, seeded).",
        "",
        *table(["condition", "what", "n", "top-1", "top-5", "answered"], rows),
    ]


def _per_source(results: dict) -> list[str]:
    rows = [
        [name, source, block["n"], _pct(block, 1), _pct(block, 5)]
        for name, res in results.items()
        for source, block in res.items()
        if source != "all"
    ]
    return ["", "## Per source", "", *table(["condition", "source", "n", "top-1", "top-5"], rows)]


def _retrievers(retrievers: dict) -> list[str]:
    """Each retrieval method's top-k, overall and top-1 per source."""
    sources = [s for s in next(iter(retrievers.values())) if s != "all"]
    rows = [
        [method, res["all"]["n"], _pct(res["all"], 1), _pct(res["all"], 5), *(_pct(res[s], 1) for s in sources)]
        for method, res in retrievers.items()
    ]
    return [
        "",
        "## Retrieval methods",
        "",
        "Each method ranks the whole vocabulary for the same cases; no LLM.",
        "",
        *table(["method", "n", "top-1", "top-5", *(f"top-1 {s}" for s in sources)], rows),
    ]


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


def _paired_tests(paired: dict) -> list[str]:
    """The McNemar test and paired bootstrap difference, fine-tuned vs base, at each k."""
    lines = []
    for k, test in paired.items():
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
    return lines


def _calibration(calibration: dict, results: dict) -> list[str]:
    header = ["condition", "n", "top-1 (log-likelihood ranking)", "top-1 (generated answer)", "mean confidence", "ECE"]
    rows = [
        [
            name,
            block["n"],
            _ci(block["top1"]),
            _pct(results[name]["all"], 1),
            f"{block['mean_confidence']:.3f}",
            f"{block['ece']:.3f}",
        ]
        for name, block in calibration["conditions"].items()
    ]
    return [
        "",
        "## Calibration: candidate log-likelihood ranking",
        "",
        f"Protocol: {calibration['protocol']}. Brackets: 95% bootstrap intervals.",
        "",
        *table(header, rows),
    ]


def _safety(safety: dict) -> list[str]:
    """Sensitivity and false alarms of the rules and of each model's answers on the red-flag set."""
    scorers = [("rules (medllm.safety.red_flags)", safety["rules"])]
    scorers += [(f"{m} model answer", b) for m, b in safety["models"].items()]
    rows = [
        [name, _ci(b["sensitivity"]), _ci(b["false_alarm_rate"]), ", ".join(b["missed"]) or "-"] for name, b in scorers
    ]
    header = ["scorer", "sensitivity (urgent flagged / advised)", "false-alarm rate (controls)", "missed"]
    return [
        "",
        "## Red-flag safety set",
        "",
        f"Protocol: {safety['protocol']}. "
        f"{safety['n_urgent']} urgent vignettes, {safety['n_controls']} non-urgent controls. "
        "Brackets: 95% bootstrap intervals.",
        "",
        *table(header, rows),
        "",
        "The rules were extended after the set was written, from clinical criteria, to cover its "
        "categories: their score on this set is in-sample and optimistic.",
    ]


def _benchmarks(benchmarks: dict) -> list[str]:
    lines = [
        "",
        "## Multiple-choice benchmarks",
        "",
        "Brackets: 95% percentile bootstrap intervals (macro: stratified by subject).",
    ]
    for result in benchmarks.values():
        lines += ["", *mcq_report_lines(result)]
    return lines


def _interval_pct(summary: dict, name: str) -> str:
    """A phenopacket metric in % with its disease-bootstrap interval."""
    low, high = summary["bootstrap"].get(name, (float("nan"), float("nan")))
    return f"{100 * summary[name]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _phenopackets(result: dict) -> list[str]:
    """Top-k and MRR per ranking method on real published cases, then another paper's figures for orientation."""
    header = ["method", "n", "diseases", "top-1 %", "top-3 %", "top-10 %", "MRR x100", "series top-1 / top-10 %"]
    header += ["coverage %", "ms/case"]
    rows = [
        [
            name,
            s["n"],
            s["diseases"],
            *(_interval_pct(s, k) for k in ("top1", "top3", "top10", "mrr")),
            series_cell(s),
            f"{100 * s['coverage']:.1f}",
            f"{s['ms_median']:.1f}",
        ]
        for name, s in result["methods"].items()
    ]
    published = result["published"]
    anchors = [[name, m["top1"], m["top3"], m["top10"]] for name, m in published["methods"].items()]
    return [
        "",
        "## Real published cases (phenopackets)",
        "",
        f"Protocol: {result['protocol']}. n = {result['n']} cases. Brackets: 95% bootstrap intervals resampling "
        "diseases. Series: the same when numbered subtypes of one series count as one (a sibling subtype first "
        "is a hit). Coverage: share of cases whose diagnosis is among the ranked diseases (the others are misses).",
        "",
        *table(header, rows),
        *_served_calibration(result),
        *_rerank(result.get("rerank")),
        "",
        f"For orientation only: {published['source']}; top-k in %.",
        "",
        *table(["method (published)", "top-1 %", "top-3 %", "top-10 %"], anchors),
    ]


def _served_calibration(result: dict) -> list[str]:
    """How well the confidence the API shows for the first disease matches how often it is the diagnosis."""
    block = result.get("calibration")
    if not block:
        return []
    return [
        "",
        f"Confidence shown by the served ranker (softmax over every ranked disease at temperature "
        f"{block['temperature']:g}): ECE {block['ece']:.3f} of the first disease's confidence against its being "
        f"the diagnosis (mean confidence {100 * block['mean_confidence']:.1f}%, n = {block['n']}).",
    ]


def _rerank(rerank: dict | None) -> list[str]:
    """Each re-ranker's fitted fusion, its calibration and its paired test against the phenotype ranking."""
    if not rerank:
        return []
    lines = ["", f"Re-rankers: {rerank['protocol']}.", ""]
    for block in rerank["models"].values():
        fusion, paired, dev = block["fusion"], block["vs_phenotype_top1"], block["dev_top1_hits"]
        lines.append(
            f"- {block['method']}: log-likelihood {'per token' if fusion['per_token'] else 'summed'}, "
            f"temperature {fusion['temperature']:.3g}; dev top-1 hits {dev['fused']} fused vs {dev['phenotype']} "
            f"phenotype (n = {rerank['fit_n']}); ECE {block['calibration']['ece']:.3f}; top-1 vs the phenotype "
            f"ranking {100 * paired['difference']:+.1f} points, exact McNemar p = {paired['p_value']:.3g} "
            f"({paired['only_first']} vs {paired['only_second']} discordant, n = {paired['n']})"
        )
    return lines


def _figures(figures: dict[str, str]) -> list[str]:
    return ["", "## Figures", ""] + [
        f"![{CAPTIONS.get(k, 'Reliability diagram of ' + k.removeprefix('reliability_'))}]({v})"
        for k, v in figures.items()
    ]


def _examples(predictions: list[dict]) -> list[str]:
    """The first three cases with each condition's answer, flattened to one line."""
    lines = ["", "## Examples", ""]
    for p in predictions[:3]:
        lines.append(f"- `{p['id']}` (true: `{p['disease_id']}`)")
        for key, value in p.items():
            if key.endswith("_answer"):
                lines.append(f"  - {key[:-7]}: " + value.replace("\n", " / ")[:400])
    return lines


def render_report(metrics: dict, predictions: list[dict], figures: dict[str, str] | None = None) -> str:
    """``report.md``: every scored part of ``metrics``, the figures and a few example answers."""
    results = metrics["conditions"]
    lines = _overview(metrics) + _per_source(results)
    if metrics.get("retrievers"):
        lines += _retrievers(metrics["retrievers"])
    lines += ["", "## Reading", "", *_comparison(results), *_paired_tests(metrics.get("finetuned_vs_base_rag") or {})]
    if metrics.get("calibration"):
        lines += _calibration(metrics["calibration"], results)
    if metrics.get("safety"):
        lines += _safety(metrics["safety"])
    if metrics.get("benchmarks"):
        lines += _benchmarks(metrics["benchmarks"])
    if metrics.get("qa"):
        lines += ["", *qa_report_lines(metrics["qa"])]
    if metrics.get("phenopackets"):
        lines += _phenopackets(metrics["phenopackets"])
    if figures:
        lines += _figures(figures)
    return "\n".join(lines + _examples(predictions)) + "\n"
