"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the model backend answers too, whether it scores
candidates and which ranking ``/v1/diagnose`` serves); no API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from medllm.serve.dependencies import State

router = APIRouter()


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz")
def readyz(state: State):
    engine = state.engine
    if not engine.ready():
        return JSONResponse({"status": "not ready", "model": engine.name}, status_code=503)
    return {
        "status": "ready",
        "model": engine.name,
        "adapter": engine.adapter,
        "backend": state.config.serve.backend,
        "candidate_scoring": engine.scores_candidates,  # log-likelihoods of the candidates, for the re-ranker
        "ranking": "fused" if state.reranks else "phenotype",
    }
