"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the model backend answers too); no API key."""

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
    return {"status": "ready", "model": engine.name, "adapter": engine.adapter}
