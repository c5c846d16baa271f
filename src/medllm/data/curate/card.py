"""The data card: what curation did and to what, with the sources' licenses and access terms, as Markdown
(``data_card.md``), JSON (``data_card.json``) and plots."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from medllm.config import SPLITS
from medllm.data.curate.plots import plot_mixture, plot_token_lengths
from medllm.data.curate.text import prompt_text
from medllm.data.sources import SOURCES, SourceInfo
from medllm.errors import MedllmError
from medllm.io import atomic_write_json, atomic_write_text
from medllm.markdown import table

CARD_EXAMPLES = 3
CARD_TRUNCATE = 400  # characters of an example's prompt shown in the card


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join(table(header, rows)) + "\n"


def _fence(text: str) -> str:
    """A fenced block longer than any backtick run inside ``text``."""
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}text\n{text}\n{ticks}\n"


def _truncate(text: str, limit: int = CARD_TRUNCATE) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _source_info(name: str, extra: Mapping[str, SourceInfo | Mapping] | None) -> dict:
    info = (extra or {}).get(name) or SOURCES.get(name)
    if info is None:
        raise MedllmError(f"data card: no license or access terms for source '{name}': pass them in extra_sources")
    info = asdict(info) if isinstance(info, SourceInfo) else dict(info)
    missing = [k for k in ("license", "access") if not info.get(k)]
    if missing:
        raise MedllmError(f"data card: source '{name}' needs {' and '.join(missing)}")
    return {"task": info.get("task", ""), "license": info["license"], "access": info["access"]}


def write_data_card(
    folder: Path,
    report: dict,
    sources_used: Iterable[str],
    examples: Iterable[dict],
    extra_sources: Mapping[str, SourceInfo | Mapping] | None = None,
) -> dict[str, Path]:
    """Write ``data_card.md``, ``data_card.json`` and the PNG plots into ``folder``, each atomically.

    ``report`` is :func:`medllm.data.curate.pipeline.curate`'s; ``sources_used`` the source names to
    state license and access terms for (from :data:`medllm.data.sources.SOURCES`,
    or ``extra_sources``: name → :class:`SourceInfo` or ``{license, access,
    task}`` for sources defined elsewhere; a source with neither is an error,
    since a card without its terms would mislead). ``examples``: records,
    the first 3 per source shown (prompt truncated). Returns name → path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(sources_used))
    infos = {name: _source_info(name, extra_sources) for name in names}
    shown: dict[str, list[dict]] = defaultdict(list)
    for record in examples:
        if len(shown[record["source"]]) < CARD_EXAMPLES:
            shown[record["source"]].append(
                {
                    "id": record["id"],
                    "prompt": _truncate(prompt_text(record)),
                    "reference": _truncate(record["reference"]),
                }
            )
    plots = {
        "token_lengths": plot_token_lengths(report, folder / "token_lengths.png"),
        "mixture": plot_mixture(report, folder / "mixture.png"),
    }
    plots = {k: v for k, v in plots.items() if v}
    card = {
        "sources": {n: {**infos[n], "load": report.get("sources", {}).get(n)} for n in names},
        "report": report,
        "examples": dict(shown),
        "plots": plots,
    }
    atomic_write_json(folder / "data_card.json", card)
    atomic_write_text(folder / "data_card.md", _card_markdown(card))
    written = {"data_card.md": folder / "data_card.md", "data_card.json": folder / "data_card.json"}
    written.update({name: folder / name for name in plots.values()})
    return written


def _card_markdown(card: dict) -> str:
    report = card["report"]
    sections = [
        _overview(report),
        _sources(card["sources"]),
        _steps(report.get("steps", {})),
        _scrubbed(report.get("scrub") or {}),
        _near_duplicates(report.get("steps", {})),
        _decontamination(report.get("decontamination") or {}),
        _splits(report),
        _token_lengths(report, card["plots"]),
        _examples(card["examples"]),
    ]
    return "".join(sections)


def _overview(report: dict) -> str:
    sizes = report.get("split_sizes", {})
    return (
        "# Data card\n\n"
        f"Curated records: {sum(sizes.values())} (" + ", ".join(f"{split} {n}" for split, n in sizes.items()) + "). "
        "Splits are by group (patient, note, article): no group is in two splits. "
        "Identifiers in free text were replaced by placeholders with pattern-based scrubbing, "
        "which is no substitute for the sources' own de-identification.\n"
    )


def _sources(sources: dict) -> str:
    header = ["source", "task", "license", "access", "read", "malformed", "filtered", "records"]
    rows = []
    for name, info in sources.items():
        load = info.get("load") or {}
        counts = [load.get(key, "") for key in ("read", "bad", "filtered", "yielded")]
        rows.append([name, info["task"], info["license"], info["access"], *counts])
    return "\n## Sources\n\n" + _table(header, rows)


def _steps(steps: dict) -> str:
    rows = []
    for step, block in steps.items():
        if "skipped" in block:
            rows.append([step, "", "", "", f"skipped: {block['skipped']}"])
            continue
        dropped = "; ".join(f"{reason} {sum(c.values())}" for reason, c in block["dropped"].items()) or "none"
        rows.append([step, block["scope"], block["in_total"], block["out_total"], dropped])
    out = "\n## Curation steps\n\n" + _table(["step", "applies to", "in", "out", "dropped"], rows)
    sources = sorted({s for b in steps.values() if "in" in b for s in b["in"]})
    if sources:
        ran = [s for s, b in steps.items() if "out" in b]
        header = [f"{s} (train)" if steps[s]["scope"] == "train" else s for s in ran]
        rows = [[src, *(steps[s]["out"].get(src, 0) for s in ran)] for src in sources]
        out += "\nRecords out of each step, per source:\n\n" + _table(["source", *header], rows)
    return out


def _scrubbed(scrub: dict) -> str:
    if not scrub.get("by_source"):
        return ""
    kinds = list(scrub["total"])
    rows = [
        [src, *(counts.get(k, 0) for k in kinds), scrub["records_changed"].get(src, 0)]
        for src, counts in scrub["by_source"].items()
    ]
    rows.append(["total", *(scrub["total"][k] for k in kinds), sum(scrub["records_changed"].values())])
    return "\n## Scrubbed identifiers\n\n" + _table(["source", *kinds, "records changed"], rows)


def _near_duplicates(steps: dict) -> str:
    near = [e for e in steps.get("dedupe", {}).get("examples", []) if e["reason"] == "near_duplicate"]
    if not near:
        return ""
    pairs = "; ".join(f"`{e['id']}` → `{e['of']}` (Jaccard {e['jaccard']})" for e in near)
    return f"\nNear-duplicate examples (dropped → kept): {pairs}\n"


def _decontamination(decon: dict) -> str:
    if not decon:
        return ""
    out = (
        f"\n## Decontamination\n\nTraining records sharing a word {decon['ngram']}-gram (within a line, no number) "
        f"with an evaluation text were dropped: {decon['dropped_total']} in all. N-grams found in more than "
        f"{decon['max_groups']} groups (evaluation and training together) count as template text "
        f"and were ignored ({decon['common_ngrams_ignored']}).\n\n"
    )
    header = ["evaluation set", "texts", "units", f"shorter than {decon['ngram']} words", "training records dropped"]
    rows = [
        [name, s["texts"], s["units"], s["too_short"], sum(decon["dropped"].get(name, {}).values())]
        for name, s in decon["eval_sets"].items()
    ]
    out += _table(header, rows)
    if decon["examples"]:
        leaks = "; ".join(f'`{e["id"]}` ({e["reason"]}: "{e.get("ngram", "")}")' for e in decon["examples"])
        out += f"\nExamples: {leaks}\n"
    return out


def _splits(report: dict) -> str:
    splits, sizes = report.get("splits") or {}, report.get("split_sizes", {})
    names = [s for s in SPLITS if s in splits]
    rows = [[src, *(splits[sp].get(src, 0) for sp in names)] for src in sorted({s for c in splits.values() for s in c})]
    out = "\n## Splits\n\n" + _table(["source", *names], [*rows, ["total", *(sizes.get(sp, 0) for sp in names)]])
    mixture = (report.get("config") or {}).get("mixture") or {}
    if mixture:
        out += "\nMixture settings: " + "; ".join(f"{s}: {m}" for s, m in mixture.items()) + "\n"
    return out


def _token_lengths(report: dict, plots: dict) -> str:
    out = ""
    lengths = (report.get("token_lengths") or {}).get("by_source") or {}
    if lengths:
        keys = ["n", "min", "median", "mean", "p95", "max"]
        out += "\n## Token lengths\n\n" + _table(
            ["source", *keys], [[s, *(v[k] for k in keys)] for s, v in lengths.items()]
        )
    return out + "".join(f"\n![{name}]({file})\n" for name, file in plots.items())


def _examples(examples: dict) -> str:
    if not examples:
        return ""
    out = "\n## Examples\n\n"
    for source, rows in examples.items():
        out += f"\n### {source}\n"
        for example in rows:
            out += (
                f"\n`{example['id']}`\n\nPrompt:\n\n{_fence(example['prompt'])}\n"
                f"Reference:\n\n{_fence(example['reference'])}"
            )
    return out
