"""Re-rank training rows: a case's phenotype top K with their evidence, and the true disease as the answer.

The prompt is the one the re-ranker is scored and served with (:func:`medllm.prompts.rerank_messages`): the
case as the Monarch benchmark writes it (:func:`medllm.phenotype.rerank.case_vignette`) and the served
ranker's best K over the whole knowledge base (``rerank.top_k``), each with the case's findings it explains,
leaves unexplained and contradicts, in a per-case shuffled order. The answer is
:func:`medllm.prompts.rerank_answer` of the true disease, which replaces the K-th candidate when the ranking
missed it, so every training prompt holds its answer.

Cases come from two places: simulated from the knowledge base's annotations of the data's diseases
(findings drawn by annotated frequency, some made less specific, unrelated ones added, some findings checked
and found absent), and real phenopackets (``data.sources: [{source: phenopackets, path: DIR_OR_ZIP}]``),
of which only the ``train`` half of the dev part's diseases is used (:func:`medllm.data.phenopackets.dev_halves`):
the other half fits the fusion weight, and validation and test stay unseen.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medllm.config import Config, SimulationConfig, SourceSpec
from medllm.data.loaders.reading import Bad, load_records
from medllm.data.phenopackets import PhenopacketCase, dev_halves, documents, parse_phenopacket, split_by_disease
from medllm.data.sources import LoadStats, SourceInfo
from medllm.errors import MedllmError
from medllm.knowledge import DEFAULT_FREQUENCY, Disease
from medllm.phenotype.explain import Explainer
from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, ROOT
from medllm.phenotype.rank import Ranker, case_scores, case_terms, id_positions, load_ranker
from medllm.phenotype.rerank import case_text, shown_order, top_candidates
from medllm.prompts import rerank_answer, rerank_messages

RERANK = "rerank"  # the task of these rows
PHENOPACKETS = SourceInfo(  # data.sources: [{source: phenopackets, path: DIR_OR_ZIP}]
    RERANK,
    "the collection's own (phenopacket-store: BSD 3-Clause, Monarch Initiative)",
    "public download (phenopacket-store releases)",
    "GA4GH Phenopacket v2 JSON documents (phenotypicFeatures with HPO ids, a diagnosis in interpretations or "
    "diseases): a folder searched recursively for *.json, or a zip such as the store's all_phenopackets.zip",
)


@dataclass
class RerankBuilder:
    """The served ranker and what a row needs from it, loaded once per build."""

    ranker: Ranker
    explainer: Explainer
    positions: dict[str, int]  # every disease id (merged ids too) → its position in ranker.rows
    top_k: int
    seed: int
    use_excluded: bool

    @classmethod
    def from_config(cls, config: Config) -> RerankBuilder:
        ranker, cfg = load_ranker(config.phenotype), config.rerank
        explainer, use_excluded = Explainer(ranker.kb), config.phenotype.use_excluded
        return cls(ranker, explainer, id_positions(ranker), cfg.top_k, cfg.seed, use_excluded)

    def row(self, case: PhenopacketCase, key: str, source: str, split: str, license: str) -> dict | None:
        """The record of one case (``split`` train or validation), or None when its disease is not ranked."""
        gold = next((self.positions[d] for d in case.disease_ids if d in self.positions), None)
        if gold is None:
            return None
        kb = self.ranker.kb
        terms = case_terms(kb, case.observed, case.excluded if self.use_excluded else ())
        scores = case_scores(self.ranker, terms, case.age_years, case.sex)
        top = top_candidates(self.ranker, self.explainer, terms, scores, self.top_k, include=gold)
        vignette = case_text(case, kb)
        shown = [top.evidence[i] for i in shown_order(vignette, len(top.evidence), self.seed)]
        answer = top.evidence[list(top.positions).index(gold)]
        name = str(kb.disease_names[self.ranker.rows[gold]])
        because = (
            f"{name} explains {', '.join(answer.matched[:3])}."
            if answer.matched
            else f"{name}, though none of the findings is among its annotated features."
        )
        case_fields = {
            "disease_id": str(kb.disease_ids[self.ranker.rows[gold]]),
            "disease": name,
            "vignette": vignette,
            "candidates": [c.name for c in shown],
            "retrieved": list(top.ids),
        }
        return {
            "source": source,
            "id": key,
            "group": case_fields["disease_id"],
            "task": RERANK,
            "messages": rerank_messages(vignette, shown),
            "reference": rerank_answer(name, because),
            "license": license,
            "meta": {},
            "split": split,
            "case": case_fields,
        }


def simulate_terms(kb, row: int, cfg: SimulationConfig, rng: random.Random, key: str) -> PhenopacketCase:
    """A noisy case of the disease in knowledge-base ``row``, as HPO ids: the data simulation's rules.

    Findings are drawn by annotated frequency (unknown: 0.5), each made one step less specific with
    ``cfg.ancestor_prob``; ``cfg.extra_findings`` unrelated findings come from random other diseases, and
    ``cfg.excluded_findings`` are checked and absent: the disease's own rarer findings (as in published
    cases) or another disease's.
    """
    freq = kb.frequency.getrow(row)
    terms, weights = list(freq.indices), [DEFAULT_FREQUENCY if np.isnan(f) else max(f, 0.01) for f in freq.data]
    chosen = []
    for _ in range(min(rng.randint(*cfg.findings), len(terms))):  # weighted sampling without replacement
        pick = rng.choices(range(len(terms)), weights=weights)[0]
        chosen.append(terms.pop(pick))
        weights.pop(pick)
    trivial = {kb.term_index(ROOT), kb.term_index(PHENOTYPIC_ABNORMALITY)}
    observed = []
    for term in chosen:
        parents = [int(p) for p in kb.parents.getrow(term).indices if p not in trivial]
        observed.append(rng.choice(parents) if parents and rng.random() < cfg.ancestor_prob else int(term))
    observed += [_unrelated_finding(kb, rng) for _ in range(rng.randint(*cfg.extra_findings))]
    excluded = []
    for _ in range(rng.randint(*cfg.excluded_findings)):
        if terms and rng.random() < 0.5:
            excluded.append(int(rng.choices(terms, weights=[1.05 - min(w, 1.0) for w in weights])[0]))
        else:
            excluded.append(_unrelated_finding(kb, rng))
    low, high = (0.0, 70.0) if np.isnan(kb.ages[row]).any() else kb.ages[row]
    sex = str(kb.disease_sex[row]) or rng.choice(["female", "male"])
    ids = [str(kb.term_ids[t]) for t in observed]
    return PhenopacketCase(
        id=key,
        cohort="simulated",
        observed=tuple(dict.fromkeys(ids)),
        excluded=tuple(dict.fromkeys(str(kb.term_ids[t]) for t in excluded if str(kb.term_ids[t]) not in ids)),
        sex=sex,
        age_years=rng.uniform(float(low), float(min(high, 90.0))),
        onset_years=None,
        disease_ids=tuple(kb.ids_of(row)),
        disease_label=str(kb.disease_names[row]),
        file="",
    )


def _unrelated_finding(kb, rng: random.Random) -> int:
    """A finding of a random disease of the base (the simulation's noise)."""
    return int(rng.choice(kb.frequency.getrow(rng.randrange(kb.n_diseases)).indices))


def simulated_records(
    diseases: list[Disease], config: Config, builder: RerankBuilder, licenses: dict[str, str]
) -> Iterator[dict]:
    """Re-rank records of simulated cases of ``diseases`` (``licenses``: by source) for train and validation.

    The test split gets none: the re-ranker is tested on published cases (``medllm eval`` on phenopackets).
    """
    kb, cfg = builder.ranker.kb, config.data.simulation
    rows = kb.id_rows()
    for split in ("validation", "train"):  # held-out first, so a duplicate is dropped from training
        rng = random.Random(f"{RERANK}:{cfg.seeds[split]}")
        for disease in diseases:
            row = next((rows[i] for i in [disease.id, *disease.other_ids] if i in rows), None)
            if row is None or kb.frequency.getrow(row).nnz == 0:
                continue
            for n in range(cfg.cases_per_disease[split]):
                key = f"{RERANK}-{split}-{disease.id}-{n}"
                case = simulate_terms(kb, row, cfg, rng, key)
                record = builder.row(case, key, disease.source, split, licenses[disease.source])
                if record is not None:
                    yield record


def phenopacket_records(spec: SourceSpec, builder: RerankBuilder, stats: LoadStats) -> Iterator[dict]:
    """Re-rank records of the published cases in ``spec.path`` whose diseases are in the dev part's train half.

    A file that is not a usable phenopacket is skipped and counted, under ``spec.max_bad_fraction``; cases of
    the other parts, and of diseases the knowledge base lacks, are counted as filtered.
    """
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise MedllmError(f"{path}: does not exist; expected {PHENOPACKETS.files}")

    def parse(item):
        name, cohort, raw = item
        try:
            return [parse_phenopacket(json.loads(raw), name, cohort)], 0
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise Bad(f"{type(exc).__name__}: {exc}") from None

    units = ((name, (name, cohort, raw)) for name, cohort, raw in documents(path))
    cases = list(load_records("phenopackets", path, units, parse, stats, spec.max_bad_fraction, PHENOPACKETS.files))
    train = dev_halves(split_by_disease(cases)["dev"])["train"]
    license = PHENOPACKETS.license
    records = [builder.row(case, f"phenopackets:{case.id}", "phenopackets", "train", license) for case in train]
    kept = [r for r in records if r is not None]
    stats.filtered += len(cases) - len(kept)
    stats.yielded -= len(cases) - len(kept)
    yield from kept
