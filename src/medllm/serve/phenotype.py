"""The HPO side of ``/v1/diagnose``: the findings a request holds, and every disease ranked from them.

An HPO list or a phenopacket is read into findings: old ids are mapped through the
knowledge base's alias map (and the finding says so); unknown ids, or no present finding,
are a 422 naming them. The configured ranker scores every disease of the knowledge base;
the top ``top_k`` come back with a softmax confidence and their term evidence. With a fitted
(or configured) fusion weight above 0 and an in-process model, the model re-ranks the top
``rerank.top_k`` (:mod:`medllm.phenotype.rerank`; it cannot add a disease), the rest after.
The model's text is the rationale: when it cannot be reached the ranking still returns,
with a note saying so. The patient-fields shape gets its findings recognised in its symptoms and
note (:func:`medllm.phenotype.findings.recognise`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException

from medllm.data.phenopackets import parse_phenopacket
from medllm.phenotype.explain import TermMatch, confidences
from medllm.phenotype.findings import recognise
from medllm.phenotype.kb import KnowledgeBase
from medllm.phenotype.rank import CaseTerms, case_terms, ranking
from medllm.phenotype.rerank import case_vignette, score_case, top_candidates
from medllm.prompts import build_messages
from medllm.serve.backends import BackendError
from medllm.serve.dependencies import ServeState
from medllm.serve.schemas import (
    Diagnosis,
    HpoCase,
    PatientCase,
    PhenopacketRequest,
    RecognisedFinding,
    TermEvidence,
    patient_phrase,
)

log = logging.getLogger(__name__)


@dataclass
class PhenotypeCase:
    """What was read from an HPO-shaped request."""

    findings: list[RecognisedFinding]
    age: float | None
    sex: str
    note: str = ""

    def ids(self) -> tuple[list[str], list[str]]:
        return [f.term_id for f in self.findings if not f.excluded], [f.term_id for f in self.findings if f.excluded]

    def vignette(self) -> str:
        present, absent = ([f.label for f in self.findings if f.excluded is e] for e in (False, True))
        text = f"{patient_phrase(self.age, self.sex)} presents with {', '.join(present)}."
        if absent:
            text += f" Excluded: {', '.join(absent)}."
        return text + (f" Note: {self.note}" if self.note else "")


def read_findings(kb: KnowledgeBase, items: list[tuple[str, str, bool]], field: str) -> list[RecognisedFinding]:
    """Findings from (where, HPO id, excluded) triples; 422 naming every unknown id, or no present finding."""
    findings, unknown = [], []
    for where, term, excluded in items:
        try:
            column = kb.term_index(term)
        except KeyError:
            unknown.append(f"{where}: unknown HPO id {term} (not in HPO {kb.release})")
            continue
        live = str(kb.term_ids[column])
        note = None if live == term else f"{term} is an obsolete or alternative HPO id, read as {live}"
        label = str(kb.term_names[column])
        findings.append(
            RecognisedFinding(term_id=live, label=label, excluded=excluded, input=where, text=term, note=note)
        )
    if unknown:
        raise HTTPException(422, "; ".join(unknown))
    if all(f.excluded for f in findings):
        raise HTTPException(422, f"{field}: every finding is excluded; at least one present finding is needed to rank")
    return findings


def from_hpo(case: HpoCase, kb: KnowledgeBase) -> PhenotypeCase:
    items = [(f"hpo.{i}.id", finding.id, finding.excluded) for i, finding in enumerate(case.hpo)]
    return PhenotypeCase(read_findings(kb, items, "hpo"), case.age, case.sex, case.note)


def from_phenopacket(request: PhenopacketRequest, kb: KnowledgeBase) -> PhenotypeCase:
    """The phenopacket's phenotypic features (``type.id``, ``excluded``), subject sex and age at last encounter."""
    doc = request.phenopacket
    try:
        parsed = parse_phenopacket(doc)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise HTTPException(422, f"phenopacket: not a usable Phenopacket v2 document ({exc})") from None
    first: dict[str, int] = {}
    for i, feature in enumerate(doc["phenotypicFeatures"]):
        first.setdefault(feature["type"]["id"], i)
    items = [(f"phenopacket.phenotypicFeatures.{first[t]}.type.id", t, False) for t in parsed.observed]
    items += [(f"phenopacket.phenotypicFeatures.{first[t]}.type.id", t, True) for t in parsed.excluded]
    findings = read_findings(kb, items, "phenopacket.phenotypicFeatures")
    return PhenotypeCase(findings, parsed.age_years, parsed.sex or "unknown")


def recognised(case: PatientCase, state: ServeState) -> list[RecognisedFinding]:
    """HPO findings recognised in the symptoms (each on its own) and the note."""
    kb = state.ranker.kb
    found = [(f"symptoms.{f.item}", f) for f in recognise(case.symptoms, kb, lexicon=state.lexicon)]
    if case.note:
        found += [("note", f) for f in recognise(case.note, kb, lexicon=state.lexicon)]
    return [
        RecognisedFinding(
            term_id=f.term_id,
            label=f.label,
            excluded=f.excluded,
            input=where,
            text=f.text,
            span=f.span,
            note=None if f.source == "name" else f"matched by {f.source}",
        )
        for where, f in found
    ]


def _evidence(kb: KnowledgeBase, match: TermMatch) -> TermEvidence:
    return TermEvidence(
        patient_term=str(kb.term_ids[match.case_term]),
        patient_label=str(kb.term_names[match.case_term]),
        disease_term=str(kb.term_ids[match.disease_term]),
        disease_label=str(kb.term_names[match.disease_term]),
        match=match.match,
        frequency=match.frequency,
        patient_excluded=match.excluded,
    )


def fused_top(state: ServeState, case: PhenotypeCase, terms: CaseTerms, scores: np.ndarray):
    """The phenotype top K (``rerank.top_k``) in the fused order with their confidences (softmax over the K, the
    fitted temperature); None when no fusion is served or the backend cannot score (Ollama)."""
    score = getattr(state.engine, "loglikelihoods", None)
    if state.fusion is None or score is None:
        return None
    cfg = state.config.rerank
    top = top_candidates(state.ranker, state.explainer, terms, scores, cfg.top_k)
    present, absent = ([f.label for f in case.findings if f.excluded is e] for e in (False, True))
    vignette = case_vignette(present, absent, None if case.sex == "unknown" else case.sex, case.age)
    scored = score_case(score, vignette, top, cfg.seed)
    order = state.fusion.order(scored)
    return top.positions[order], state.fusion.confidences(scored)[order]


def rank_findings(state: ServeState, case: PhenotypeCase, top_k: int) -> tuple[list[Diagnosis], float, bool, str]:
    """The ``top_k`` diseases for the case's findings, with confidences and evidence; the top score; whether
    the scores separate the diseases at all (all equal: the findings match nothing more than any other); and the
    ranking used: ``fused`` (the model re-ranked the top K, the rest after) or ``phenotype``."""
    ranker, cfg = state.ranker, state.config.phenotype
    kb = ranker.kb
    terms = case_terms(kb, *case.ids())
    scores = ranker.score(terms.observed, terms.excluded if cfg.use_excluded else np.zeros(0, np.int64))
    probability = confidences(scores, cfg.confidence_temperature)
    order = ranking(ranker, scores)
    fused = fused_top(state, case, terms, scores)
    if fused is not None:
        positions, fused_confidence = fused
        probability[positions] = fused_confidence  # the rest keep their phenotype confidence
        order = np.concatenate([positions, order[len(positions) :]])
    order = order[:top_k]
    differential = []
    for rank, j in enumerate(order, 1):
        matches = state.explainer.evidence(int(ranker.rows[j]), terms.observed, terms.excluded)
        n_for = sum(not m.excluded for m in matches)
        rationale = f"{n_for} of {len(terms.observed)} present findings match its annotated terms"
        if len(matches) > n_for:
            rationale += f"; the patient lacks {len(matches) - n_for} finding(s) it has"
        differential.append(
            Diagnosis(
                rank=rank,
                name=str(kb.disease_names[ranker.rows[j]]),
                disease_id=str(kb.disease_ids[ranker.rows[j]]),
                icd10=None,
                confidence=round(float(probability[j]), 4),
                score=round(float(scores[j]), 4),
                rationale=rationale,
                term_evidence=[_evidence(kb, m) for m in matches],
            )
        )
    return differential, float(scores.max()), bool(np.ptp(scores) > 0), "phenotype" if fused is None else "fused"


def model_rationale(state: ServeState, case: PhenotypeCase, differential: list[Diagnosis]) -> tuple[str | None, int]:
    """The model's text on the ranked list (it does not change the order); None when the model is unavailable."""
    candidates = [f"{d.name} ({d.disease_id})" for d in differential]
    messages = build_messages(case.vignette(), candidates, len(differential))
    try:
        return state.engine.complete(messages)
    except BackendError as exc:
        log.warning("model unavailable, phenotype ranking returned without a rationale: %s", exc)
        return None, 0
