"""``POST /v1/diagnose``: a structured patient → a ranked differential with evidence, red flags and next steps."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from medllm.knowledge import Disease
from medllm.prompts import build_messages, describe_candidate
from medllm.safety import URGENT_CARE, red_flags
from medllm.serve.dependencies import ServeState, State, admitted, authorize, refuse_injection
from medllm.serve.schemas import DiagnoseResponse, Diagnosis, Evidence, PatientCase, SimilarCase

router = APIRouter()


def _next_steps(top: Disease | None, flagged: bool) -> list[str]:
    steps = [URGENT_CARE] if flagged else []
    if top is None:
        return [*steps, "Take a fuller history and examination; no candidate matched the findings."]
    if top.source == "hpo":
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


def _differential(state: ServeState, vignette: str, hits: list, answer: str) -> list[Diagnosis]:
    """The model's order first, then any retrieved candidate it did not name, each with its evidence."""
    size = state.config.prompt.differential_size
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


@router.post("/v1/diagnose", response_model=DiagnoseResponse, dependencies=[Depends(authorize), Depends(admitted)])
def diagnose(case: PatientCase, state: State):
    started, request_id = time.perf_counter(), uuid.uuid4().hex
    refuse_injection(case.note, *case.symptoms, *case.history, *case.medications)
    vignette = case.vignette()
    flags = red_flags(vignette, case.vitals.model_dump() if case.vitals else None)
    hits = state.index.search(vignette, state.config.prompt.num_candidates)
    messages = build_messages(vignette, [describe_candidate(d) for d, _ in hits], state.config.prompt.differential_size)
    answer, n_tokens = state.engine.complete(messages)
    differential = _differential(state, vignette, hits, answer)
    n_similar = state.config.serve.similar_cases
    similar = state.cases.search(vignette, n_similar) if state.cases is not None and n_similar else []
    top = state.diseases[differential[0].disease_id] if differential else None
    state.audit(request_id, case.model_dump_json(), started)
    return DiagnoseResponse(
        request_id=request_id,
        differential=differential,
        red_flags=[vars(f) for f in flags],
        urgent_care=URGENT_CARE if flags else None,
        next_steps=_next_steps(top, bool(flags)),
        similar_cases=[SimilarCase(source_id=c["id"], title=c["title"], score=round(score, 4)) for c, score in similar],
        model=state.engine.name,
        adapter=state.engine.adapter,
        completion_tokens=n_tokens,
    )
