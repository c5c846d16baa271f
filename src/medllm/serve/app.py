"""``medllm serve``: the clinical decision-support API (FastAPI under uvicorn).

- ``POST /v1/diagnose``: a patient (structured fields, HPO terms or a GA4GH
  phenopacket) → the findings it read, a ranked differential with confidence
  and evidence, red flags, next steps and a disclaimer.
- ``POST /v1/chat/completions`` (OpenAI shape, streaming by server-sent
  events or not), ``GET /v1/models``, ``GET /healthz``, ``GET /readyz``.
- Ollama's ``POST /api/chat``, ``POST /api/generate`` (newline-delimited JSON
  streams), ``GET /api/tags`` and ``POST /api/show``.

Each shape is a router in :mod:`medllm.serve.routes`; ``create_app`` builds
their shared state, adds the middleware and includes them.

Answers come from the model in-process (transformers, or the exported GGUF in
llama.cpp: ``serve.backend: llamacpp``), from an Ollama server (``ollama``) or
from any OpenAI-compatible server (``openai``); a prompt longer than the
model's context is a 413 naming the limit. Patient text is never logged; an audit log of
request id, time, model, input hash and latency can be switched on. A bearer
API key is required when configured. Requests beyond ``serve.max_pending`` in
flight get 503 at once; bodies over ``serve.max_request_bytes`` get 413,
whether sent with a Content-Length or chunked.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from medllm.config import Config
from medllm.llamacpp import ContextExceeded
from medllm.phenotype.rank import Ranker, load_ranker
from medllm.retrieval import CaseIndex, DiseaseIndex
from medllm.safety import DISCLAIMER
from medllm.serve.backends import Backend, BackendError, load_backend
from medllm.serve.dependencies import ServeState
from medllm.serve.routes import diagnose, health, ollama, openai

log = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, counted as it arrives (sized or chunked).

    The body (at most ``max_bytes``) is read before the app runs and replayed to it.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            return await JSONResponse({"detail": "invalid Content-Length header"}, 400)(scope, receive, send)
        too_large = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, 413)
        if length is not None and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def backend_failed(request: Request, exc: BackendError):
    """502 naming the backend (e.g. the Ollama URL), and an error in the log."""
    log.error("model backend failed: %s", exc)
    return JSONResponse({"detail": f"model backend unavailable: {exc}"}, status_code=502)


async def context_exceeded(request: Request, exc: ContextExceeded):
    """413 naming the context window the prompt does not fit in."""
    return JSONResponse({"detail": str(exc)}, status_code=413)


async def invalid_request(request: Request, exc: RequestValidationError):
    """422 with one line per problem: where it is (``body.symptoms.0``) and what is wrong."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def create_app(
    engine: Backend,
    index: DiseaseIndex,
    config: Config,
    cases: CaseIndex | None = None,
    ranker: Ranker | None = None,
) -> FastAPI:
    """The API over ``engine``, with candidates and evidence from ``index`` (and ``cases``), and HPO findings
    ranked by ``ranker`` (default: ``phenotype.load_ranker(config.phenotype)`` over the cached knowledge base)."""
    cfg = config.serve
    app = FastAPI(title="medllm clinical decision support", version="0.1.0", description=DISCLAIMER)
    ranker = ranker if ranker is not None else load_ranker(config.phenotype)
    app.state.serve = ServeState.build(engine, index, config, cases, ranker)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_request_bytes)
    app.add_exception_handler(BackendError, backend_failed)
    app.add_exception_handler(ContextExceeded, context_exceeded)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for routes in (health, diagnose, openai, ollama):
        app.include_router(routes.router)
    return app


def serve(config: Config, adapter: Path | None = None) -> None:
    """Load the model (and adapter) and run the API under uvicorn."""
    import uvicorn

    from medllm.data.dataset import load_index

    index, cases = load_index(config)
    app = create_app(load_backend(config, adapter), index, config, cases)
    uvicorn.run(app, host=config.serve.host, port=config.serve.port, log_level="info", access_log=False)
