"""``POST /v1/diagnose``: a patient → the findings read, a ranked differential with evidence, red flags and next steps.

Three shapes, told apart by their keys: the patient fields (symptoms, history, vitals, note:
retrieval candidates ordered by the model, with the HPO findings recognised in the text),
``hpo`` (a list of HPO ids) and ``phenopacket`` (a GA4GH Phenopacket v2 document). The
last two rank every disease of the HPO knowledge base (:mod:`medllm.serve.phenotype`).
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from medllm.prompts import build_messages, describe_candidate
from medllm.safety import URGENT_CARE, red_flags
from medllm.serve import phenotype
from medllm.serve.dependencies import ServeState, State, admitted, authorize, refuse_injection
from medllm.serve.schemas import (
    DiagnoseRequest,
    DiagnoseResponse,
    Diagnosis,
    Evidence,
    HpoCase,
    PatientCase,
    SimilarCase,
)

router = APIRouter()


def _next_steps(top: Diagnosis | None, genetic: bool, flagged: bool) -> list[str]:
    steps = [URGENT_CARE] if flagged else []
    if top is None:
        return [*steps, "Take a fuller history and examination; no candidate matched the findings."]
    if genetic:
        return [
            *steps,
            f"Consider referral to clinical genetics to evaluate {top.name}.",
            "Consider a targeted gene panel or exome sequencing guided by the phenotype.",
        ]
    return [
        *steps,
        f"Confirm or exclude {top.name} with the usual first-line investigations"
        + (f" (ICD-10 {top.icd10})." if top.icd10 else "."),
        "Review medications and history for alternative explanations.",
    ]


def _similar(state: ServeState, vignette: str) -> list[SimilarCase]:
    n_similar = state.config.serve.similar_cases
    found = state.cases.search(vignette, n_similar) if state.cases is not None and n_similar else []
    return [SimilarCase(source_id=c["id"], title=c["title"], score=round(score, 4)) for c, score in found]


def _differential(state: ServeState, vignette: str, hits: list, answer: str, size: int) -> list[Diagnosis]:
    """The model's order first, then any retrieved candidate it did not name, each with its evidence."""
    total = sum(max(s, 0.0) for _, s in hits) or 1.0
    scores = {d.id: max(s, 0.0) / total for d, s in hits}
    named_by_model = state.matcher.rank(answer, len(hits) + size)
    ranked = named_by_model[:size]
    ranked = (ranked + [d.id for d, _ in hits if d.id not in ranked])[:size]
    matches = state.index.evidence(vignette, ranked)
    differential = []
    for rank, disease_id in enumerate(ranked, 1):
        disease = state.diseases[disease_id]
        evidence = [
            Evidence(source_id=disease.id, finding=m.finding, patient_finding=m.patient_phrase, similarity=m.similarity)
            for m in matches[disease_id]
        ]
        named = "named by the model" if disease_id in named_by_model else "retrieved, not named by the model"
        differential.append(
            Diagnosis(
                rank=rank,
                name=disease.name,
                disease_id=disease.id,
                icd10=disease.icd10,
                confidence=round(scores.get(disease_id, 0.0), 4),
                rationale=f"{named}; {len(evidence)} of its annotated findings match the presentation",
                evidence=evidence[:5],
            )
        )
    return differential


def _patient(case: PatientCase, state: ServeState) -> dict:
    """Retrieval candidates ordered by the model, and the HPO findings recognised in the symptoms and note."""
    refuse_injection(case.note, *case.symptoms, *case.history, *case.medications)
    vignette = case.vignette()
    flags = red_flags(vignette, case.vitals.model_dump() if case.vitals else None)
    hits = state.index.search(vignette, max(state.config.prompt.num_candidates, case.top_k))
    messages = build_messages(vignette, [describe_candidate(d) for d, _ in hits], state.config.prompt.differential_size)
    answer, n_tokens = state.engine.complete(messages)
    differential = _differential(state, vignette, hits, answer, case.top_k)
    top = state.diseases[differential[0].disease_id] if differential else None
    return {
        "ranking": "retrieval",
        "findings": phenotype.recognised(case, state),
        "differential": differential,
        "red_flags": [vars(f) for f in flags],
        "next_steps": _next_steps(
            differential[0] if differential else None, top is not None and top.source == "hpo", bool(flags)
        ),
        "similar_cases": _similar(state, vignette),
        "completion_tokens": n_tokens,
    }


def _confidence_notes(top_score: float, separated: bool, threshold: float | None) -> list[str]:
    """A line for the clinician when the ranking is weak: all scores equal, or the top one under ``threshold``."""
    if not separated:
        return ["Low confidence: every disease scores the same; the findings do not single out any of them."]
    if threshold is not None and top_score < threshold:
        return [
            f"Low confidence: the best match scores {top_score:.3g}, below {threshold:g}; the findings do not point "
            "clearly to one disease. Record more findings (present and excluded) before relying on this list."
        ]
    return []


def _hpo(case: phenotype.PhenotypeCase, top_k: int, state: ServeState) -> dict:
    """Every disease of the knowledge base ranked from the findings; the model's text as the rationale only."""
    refuse_injection(case.note)
    differential, top_score, separated, used = phenotype.rank_findings(state, case, top_k)
    rationale, n_tokens = phenotype.model_rationale(state, case, differential)
    unavailable = "The model is unavailable: the differential is the phenotype ranking alone, without a rationale."
    low = _confidence_notes(top_score, separated, state.config.phenotype.low_confidence_below)
    notes = ([] if rationale is not None else [unavailable]) + low
    flags = red_flags(", ".join(f.label for f in case.findings if not f.excluded))
    return {
        "ranking": used,
        "findings": case.findings,
        "differential": differential,
        "low_confidence": bool(low),
        "notes": notes,
        "rationale": rationale,
        "red_flags": [vars(f) for f in flags],
        "next_steps": _next_steps(differential[0], True, bool(flags)),
        "similar_cases": _similar(state, case.vignette()),
        "completion_tokens": n_tokens,
    }


@router.post("/v1/diagnose", response_model=DiagnoseResponse, dependencies=[Depends(authorize), Depends(admitted)])
def diagnose(body: DiagnoseRequest, state: State):
    started, request_id = time.perf_counter(), uuid.uuid4().hex
    if isinstance(body, PatientCase):
        answer, age, sex = _patient(body, state), body.age, body.sex
    else:
        kb = state.ranker.kb
        case = phenotype.from_hpo(body, kb) if isinstance(body, HpoCase) else phenotype.from_phenopacket(body, kb)
        answer, age, sex = _hpo(case, body.top_k, state), case.age, case.sex
    state.audit(request_id, body.model_dump_json(), started)
    return DiagnoseResponse(
        request_id=request_id,
        age=age,
        sex=sex,
        urgent_care=URGENT_CARE if answer["red_flags"] else None,
        model=state.engine.name,
        adapter=state.engine.adapter,
        **answer,
    )
