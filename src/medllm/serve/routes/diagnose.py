"""``POST /v1/diagnose``: a patient → the findings read, a ranked differential with evidence, red flags and next steps.

Three shapes, told apart by their keys: the patient fields (symptoms, history, vitals, note:
the HPO findings recognised in the symptoms and note), ``hpo`` (a list of HPO ids) and
``phenopacket`` (a GA4GH Phenopacket v2 document). All three rank every disease of the
knowledge base, rare and common, from the findings (:mod:`medllm.serve.phenotype`); the
emergency of every red flag raised is named in the differential.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from medllm.safety import URGENT_CARE, red_flags
from medllm.serve import phenotype
from medllm.serve.dependencies import ServeState, State, admitted, authorize, refuse_injection
from medllm.serve.schemas import (
    DiagnoseRequest,
    DiagnoseResponse,
    Diagnosis,
    HpoCase,
    PatientCase,
    SimilarCase,
)

router = APIRouter()
NO_SCORING = (
    "The {backend} backend gives no log-probabilities for the candidates: the differential is the phenotype "
    "ranking, without the fine-tuned model's re-ranking."
)
SCORING_FAILED = (
    "The {backend} backend failed to score the candidates: the differential is the phenotype ranking, without "
    "the fine-tuned model's re-ranking."
)


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


def _ranked(case: phenotype.PhenotypeCase, top_k: int, state: ServeState, flags: list) -> dict:
    """Every disease of the knowledge base ranked from the findings, each flag's emergency named in it; the
    model's text as the rationale only."""
    differential, top_score, separated, used = phenotype.rank_findings(state, case, top_k, flags)
    differential, series_notes = phenotype.mark_series(differential)
    rationale, n_tokens, problem = phenotype.model_rationale(state, case, differential)
    unavailable = f"The model is unavailable ({problem}): the differential is the phenotype ranking alone."
    low = _confidence_notes(top_score, separated, state.config.phenotype.low_confidence_below)
    notes = ([unavailable] if problem else []) + low + series_notes
    if state.fusion is not None and used != "fused":
        note = SCORING_FAILED if state.reranks else NO_SCORING
        notes.insert(0, note.format(backend=state.config.serve.backend))
    top = differential[0]
    return {
        "ranking": used,
        "findings": case.findings,
        "differential": differential,
        "low_confidence": bool(low),
        "notes": notes,
        "rationale": rationale,
        "red_flags": [vars(f) for f in flags],
        "next_steps": _next_steps(top, top.icd10 is None, bool(flags)),
        "similar_cases": _similar(state, case.vignette()),
        "completion_tokens": n_tokens,
    }


def _patient(case: PatientCase, state: ServeState) -> dict:
    """The findings recognised in the symptoms and note, ranked like an HPO list; flags from all the text."""
    refuse_injection(case.note, *case.symptoms, *case.history, *case.medications)
    flags = red_flags(case.vignette(), case.vitals.model_dump() if case.vitals else None)
    found = phenotype.from_patient(case, state.ranker.kb, state.lexicon)
    return _ranked(found, case.top_k, state, flags)


def _hpo(case: phenotype.PhenotypeCase, top_k: int, state: ServeState) -> dict:
    refuse_injection(case.note)
    return _ranked(case, top_k, state, red_flags(", ".join(f.label for f in case.findings if not f.excluded)))


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
