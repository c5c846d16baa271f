"""Curation of seed-dataset records into leakage-free train/validation/test splits, with a data card.

The steps, one module each in :mod:`medllm.data.curate`, work on the records of
:mod:`medllm.data.sources` (``{source, id, group, task, messages, reference,
license, meta}``): each says what it keeps and drops (:mod:`~medllm.data.curate.tally`),
and a :class:`Tally` per step counts what came in, went out and was dropped, per
source. :func:`curate` is the recipe that chains them::

    normalize → scrub → length → dedupe (exact, near) → group split → cap
              → decontaminate (train) → weight (train)

Decontamination comes after the split because the held-out test split is one
of the texts the training split must not overlap. Dedupe and decontamination
keep compact state (16-byte hashes, MinHash signatures and LSH buckets,
8-byte n-gram hashes), never copies of texts; the records of the output are
kept, as they are the dataset. :func:`medllm.data.curate.card.write_data_card`
writes what was done and to what, with the sources' licenses and access terms.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict

import numpy as np

from medllm.config import SPLITS, CurationConfig
from medllm.data.curate.decontaminate import EvalIndex, build_eval_index, decontaminate
from medllm.data.curate.dedupe import dedupe
from medllm.data.curate.length import length_filter
from medllm.data.curate.mixture import cap_sources, weight_sources
from medllm.data.curate.normalize import normalize_records
from medllm.data.curate.scrub import SCRUB_KINDS, scrub_records
from medllm.data.curate.split import group_split
from medllm.data.curate.tally import Tally
from medllm.data.curate.text import prompt_text
from medllm.data.sources import LoadStats
from medllm.errors import MedllmError

STEPS = ("normalize", "scrub", "length", "dedupe", "split", "cap", "decontaminate", "weight")
TRAIN_ONLY = ("decontaminate", "weight")  # steps applied to the training split only
TEST_SPLIT_SET = "test_split"  # the evaluation set of the test split's own texts


def curate(
    records: Iterable[dict],
    config: CurationConfig | None = None,
    tokenizer=None,
    eval_texts: Mapping[str, Iterable[str]] | None = None,
    load_stats: Mapping[str, LoadStats] | None = None,
) -> tuple[dict[str, list[dict]], dict]:
    """Curate ``records`` (e.g. :func:`medllm.data.sources.iter_records` of several sources, chained) into splits.

    normalize → scrub → length (skipped without a ``tokenizer``) → dedupe →
    group split → cap → decontaminate the training split against
    ``eval_texts`` (``{name: [text, ...]}``, e.g. ``{"mmlu_medical":
    benchmark_texts(load_benchmark("mmlu_medical"))}``) and, with
    ``decontaminate_test_split``, the test split itself → weight the training
    split. ``config`` None: the defaults. ``load_stats`` (source → the
    :class:`LoadStats` the loaders filled) puts read/bad/filtered counts in the
    report; they are read after the records are consumed.

    Returns ``({split: [record, ...]}, report)``; the report is JSON-ready:
    ``config``, ``sources`` (load counts), ``steps`` (per step: in/out per
    source and total, dropped by reason per source, counts, examples,
    ``scope`` all or train), ``scrub`` (replacements per kind), ``decontamination``,
    ``splits`` (size per split and source), ``token_lengths`` (per source
    summary and a shared-bin histogram; None without a tokenizer).
    """
    cfg = config if config is not None else CurationConfig()
    tallies = {step: Tally() for step in STEPS}
    lengths: dict[str, int] = {}
    splits = _split_records(records, cfg, tokenizer, tallies, lengths)
    eval_sets = _eval_sets(eval_texts, splits["test"] if cfg.decontaminate_test_split else [])
    index = build_eval_index(eval_sets, cfg.decontam_ngram, cfg.decontam_max_groups)
    splits["train"] = decontaminate(splits["train"], index, tallies["decontaminate"], cfg.decontam_max_groups)
    weights = {s: m.weight for s, m in cfg.mixture.items() if m.weight is not None}
    splits["train"] = weight_sources(splits["train"], weights, cfg.seed, tallies["weight"])
    report = {
        "config": cfg.model_dump(),
        "sources": {name: asdict(stats) for name, stats in (load_stats or {}).items()},
        "steps": _steps(tallies, cfg, tokenizer is not None),
        "scrub": _scrub_summary(tallies["scrub"]),
        "decontamination": _decontamination(cfg, index, tallies["decontaminate"]),
        "splits": {split: dict(Counter(r["source"] for r in rows)) for split, rows in splits.items()},
        "split_sizes": {split: len(rows) for split, rows in splits.items()},
        "token_lengths": _length_summary(splits, lengths) if tokenizer is not None else None,
    }
    return splits, report


def _split_records(
    records: Iterable[dict], cfg: CurationConfig, tokenizer, tallies: dict[str, Tally], lengths: dict[str, int]
) -> dict[str, list[dict]]:
    """The steps over the stream, normalize to cap: the records of each split (every split present)."""
    stream: Iterable[dict] = records
    if cfg.normalize:
        stream = normalize_records(stream, tallies["normalize"])
    if cfg.scrub:
        stream = scrub_records(stream, tallies["scrub"])
    if tokenizer is not None:
        stream = length_filter(
            stream, tokenizer, cfg.min_tokens, cfg.max_tokens, tallies["length"], cfg.length_batch_size, lengths
        )
    stream = dedupe(stream, tallies["dedupe"], cfg.near_threshold, cfg.num_perm, cfg.shingle_words)
    pairs = group_split(stream, cfg.fractions, cfg.split_seed, tallies["split"])
    caps = {s: m.cap for s, m in cfg.mixture.items() if m.cap is not None}
    splits = cap_sources(pairs, caps, cfg.fractions, cfg.seed, tallies["cap"])
    for split in SPLITS:
        splits.setdefault(split, [])
    return splits


def _eval_sets(eval_texts: Mapping[str, Iterable[str]] | None, test: list[dict]) -> dict[str, Iterable]:
    """The evaluation sets to decontaminate against: ``eval_texts`` and, from ``test`` (the test split, or
    none), one unit of texts per group."""
    if eval_texts is not None and not isinstance(eval_texts, Mapping):
        raise MedllmError("curate: eval_texts must map a name to its texts, e.g. {'mmlu_medical': [...]}")
    eval_sets: dict[str, Iterable] = dict(eval_texts or {})
    if TEST_SPLIT_SET in eval_sets:
        raise MedllmError(f"curate: '{TEST_SPLIT_SET}' names the test split's own texts; call your set otherwise")
    if test:
        units: dict[str, list[str]] = defaultdict(list)
        for record in test:  # a preset split (simulated cases) overlaps by design and is checked upstream
            if not record.get("split"):
                units[record["group"]].append(prompt_text(record) + "\n" + record["reference"])
        eval_sets[TEST_SPLIT_SET] = list(units.values())
    return eval_sets


def _steps(tallies: dict[str, Tally], cfg: CurationConfig, tokenized: bool) -> dict[str, dict]:
    """Each step's tally, its scope (all splits or train), or why it was skipped."""
    steps = {}
    for step, tally in tallies.items():
        if step == "length" and not tokenized:
            steps[step] = {"skipped": "no tokenizer given"}
        elif (step == "normalize" and not cfg.normalize) or (step == "scrub" and not cfg.scrub):
            steps[step] = {"skipped": "turned off"}
        else:
            steps[step] = {"scope": "train" if step in TRAIN_ONLY else "all", **tally.as_dict()}
    return steps


def _scrub_summary(tally: Tally) -> dict:
    counts = tally.counts
    return {
        "total": {kind: sum(counts[kind].values()) for kind in SCRUB_KINDS},
        "by_source": {source: {kind: counts[kind][source] for kind in SCRUB_KINDS} for source in tally.seen},
        "records_changed": dict(counts["records_changed"]),
    }


def _decontamination(cfg: CurationConfig, index: EvalIndex, tally: Tally) -> dict:
    return {
        "ngram": cfg.decontam_ngram,
        "max_groups": cfg.decontam_max_groups,
        "eval_sets": index.stats,
        "ngrams_indexed": int(index.grams.size),
        "common_ngrams_ignored": tally.counts["common_ngrams_ignored"]["all"],
        "dropped": {name: dict(c) for name, c in tally.dropped.items()},
        "dropped_total": sum(sum(c.values()) for c in tally.dropped.values()),
        "examples": tally.examples,
    }


def _length_summary(splits: dict[str, list[dict]], lengths: dict[str, int], bins: int = 30) -> dict:
    """Per source: token count summary of the curated records, and a histogram on shared log-spaced bins."""
    per_source: dict[str, list[int]] = defaultdict(list)
    for rows in splits.values():
        for record in rows:
            if record["id"] in lengths:
                per_source[record["source"]].append(lengths[record["id"]])
    if not per_source:
        return {"by_source": {}, "histogram": None}
    everything = np.concatenate([np.asarray(v) for v in per_source.values()])
    low, high = max(1, int(everything.min())), max(2, int(everything.max()) + 1)
    edges = np.unique(np.round(np.geomspace(low, high, bins + 1)).astype(int))
    if edges.size < 2:
        edges = np.array([low, low + 1])
    summary, counts = {}, {}
    for source, values in sorted(per_source.items()):
        a = np.asarray(values)
        summary[source] = {
            "n": int(a.size),
            "min": int(a.min()),
            "median": float(np.median(a)),
            "mean": round(float(a.mean()), 1),
            "p95": float(np.percentile(a, 95)),
            "max": int(a.max()),
        }
        counts[source] = np.histogram(a, bins=edges)[0].tolist()
    return {"by_source": summary, "histogram": {"edges": edges.tolist(), "counts": counts}}
