"""``medllm serve``: the clinical decision-support API (FastAPI under uvicorn).

- ``POST /v1/diagnose``: a structured patient → a ranked differential with
  confidence and evidence, red flags, next steps and a disclaimer.
- ``POST /v1/chat/completions`` (OpenAI shape, streaming by server-sent
  events or not), ``GET /v1/models``, ``GET /healthz``, ``GET /readyz``.
- Ollama's ``POST /api/chat``, ``POST /api/generate`` (newline-delimited JSON
  streams) and ``GET /api/tags``.

Answers come from the model in-process (transformers) or from an Ollama server
(``serve.backend: ollama``). Patient text is never logged; an audit log of
request id, time, model, input hash and latency can be switched on. A bearer
API key is required when configured. Requests beyond ``serve.max_pending`` in
flight get 503 at once; bodies over ``serve.max_request_bytes`` get 413,
whether sent with a Content-Length or chunked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.knowledge import Disease
from medllm.prompts import SYSTEM_PROMPT, DiseaseMatcher, build_messages, describe_candidate
from medllm.retrieval import CaseIndex, DiseaseIndex
from medllm.run import is_adapter
from medllm.safety import DISCLAIMER, URGENT_CARE, injection_attempt, red_flags

log = logging.getLogger(__name__)

Item = Annotated[str, Field(min_length=1, max_length=200)]


class Vitals(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heart_rate: float | None = Field(None, ge=10, le=300, description="beats/min")
    systolic_bp: float | None = Field(None, ge=30, le=300, description="mmHg")
    diastolic_bp: float | None = Field(None, ge=10, le=200, description="mmHg")
    temperature_c: float | None = Field(None, ge=25, le=45)
    respiratory_rate: float | None = Field(None, ge=2, le=80, description="breaths/min")
    spo2: float | None = Field(None, ge=30, le=100, description="%")


class PatientCase(BaseModel):
    """One patient: 1–40 symptoms, up to 40 history items and medications (each 1–200
    characters), vitals within physiological ranges, a note up to 4,000 characters."""

    model_config = ConfigDict(extra="forbid")
    age: float | None = Field(None, ge=0, le=130, description="years")
    sex: Literal["female", "male", "other", "unknown"] = "unknown"
    symptoms: list[Item] = Field(min_length=1, max_length=40, description="presenting symptoms and findings")
    history: list[Item] = Field(default_factory=list, max_length=40)
    medications: list[Item] = Field(default_factory=list, max_length=40)
    vitals: Vitals | None = None
    note: str = Field("", max_length=4000, description="free-text clinical note")

    def vignette(self) -> str:
        who = f"A {self.age:g}-year-old {self.sex} patient" if self.age is not None else f"A {self.sex} patient"
        text = f"{who} presents with {', '.join(self.symptoms)}."
        if self.history:
            text += f" History: {', '.join(self.history)}."
        if self.medications:
            text += f" Medications: {', '.join(self.medications)}."
        if self.note:
            text += f" Note: {self.note}"
        return text


class Evidence(BaseModel):
    source_id: str = Field(description="the disease's id in its source (OMIM, ORPHA, ICD-10)")
    finding: str = Field(description="an annotated finding of the disease")
    patient_finding: str = Field(description="the patient's finding it matches")
    similarity: float = Field(description="cosine similarity of the two (all-MiniLM-L6-v2)")


class SimilarCase(BaseModel):
    source_id: str
    title: str
    score: float = Field(description="reciprocal-rank fusion score of BM25 and MiniLM")


class Diagnosis(BaseModel):
    rank: int
    name: str
    disease_id: str
    icd10: str | None
    confidence: float = Field(
        description="share of the retrieval score among the candidates; not a calibrated probability"
    )
    rationale: str
    evidence: list[Evidence]


class DiagnoseResponse(BaseModel):
    request_id: str
    differential: list[Diagnosis]
    red_flags: list[dict]
    urgent_care: str | None
    next_steps: list[str]
    similar_cases: list[SimilarCase]
    model: str
    adapter: str | None
    completion_tokens: int = Field(description="tokens the model generated for this answer")
    disclaimer: str = DISCLAIMER


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=50)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False


class OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # sampling options we do not use are accepted
    num_predict: int | None = Field(None, ge=1)


class OllamaChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=50)
    stream: bool = True
    options: OllamaOptions = OllamaOptions()


class OllamaShowRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200)


class OllamaGenerateRequest(BaseModel):
    model: str | None = None
    prompt: str = Field(min_length=1, max_length=8000)
    system: str | None = Field(None, max_length=8000)
    stream: bool = True
    options: OllamaOptions = OllamaOptions()


class BackendError(MedllmError):
    """The model backend failed or cannot be reached (answered as 502)."""


class Backend(Protocol):
    """What the API needs from a model: a name, and answers whole or streamed."""

    name: str
    adapter: str | None

    def ready(self) -> bool: ...

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]: ...

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]: ...


@dataclass
class Engine:
    """The model loaded in-process (transformers); one generation at a time."""

    model: object
    tokenizer: object
    name: str
    adapter: str | None
    max_new_tokens: int
    timeout_s: float

    def __post_init__(self):
        self._lock = threading.Lock()

    def ready(self) -> bool:
        return True

    def _inputs(self, messages: list[dict]):
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)

    def _kwargs(self, max_new_tokens: int | None) -> dict:
        return {
            "max_new_tokens": min(max_new_tokens or self.max_new_tokens, self.max_new_tokens),
            "do_sample": False,
            "max_time": self.timeout_s,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]:
        """The answer text and its number of tokens."""
        import torch

        inputs = self._inputs(messages)
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, **self._kwargs(max_new_tokens))
        new = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run():
            with self._lock:
                self.model.generate(**inputs, **self._kwargs(max_new_tokens), streamer=streamer)

        threading.Thread(target=run, daemon=True).start()
        yield from streamer


class OllamaEngine:
    """A model served by an Ollama server (e.g. the one ``medllm export`` published), over HTTP."""

    def __init__(self, url: str, model: str, max_new_tokens: int, timeout_s: float):
        import httpx
        import ollama

        self.name, self.adapter, self.max_new_tokens = model, None, max_new_tokens
        self._client = ollama.Client(host=url, timeout=timeout_s)
        self._errors = (ollama.ResponseError, ollama.RequestError, ConnectionError, httpx.HTTPError)
        self._url = url

    def ready(self) -> bool:
        """The Ollama server answers and has the model."""
        try:
            self._client.show(self.name)
        except self._errors:
            return False
        return True

    def _call(self, messages: list[dict], max_new_tokens: int | None, stream: bool):
        limit = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        try:
            return self._client.chat(
                model=self.name, messages=messages, stream=stream, options={"num_predict": limit, "temperature": 0}
            )
        except self._errors as exc:
            raise BackendError(f"Ollama at {self._url} (model {self.name}): {exc}") from None

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]:
        reply = self._call(messages, max_new_tokens, stream=False)
        return reply.message.content.strip(), reply.eval_count or 0

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        try:
            for part in self._call(messages, max_new_tokens, stream=True):
                yield part.message.content
        except self._errors as exc:
            raise BackendError(f"Ollama at {self._url} (model {self.name}): {exc}") from None


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


def create_app(engine: Backend, index: DiseaseIndex, config: Config, cases: CaseIndex | None = None) -> FastAPI:
    """The API over ``engine``, with candidates and evidence from ``index`` (and ``cases``)."""
    cfg = config.serve
    matcher = DiseaseMatcher(index.diseases)
    by_id = {d.id: d for d in index.diseases}
    pending = threading.BoundedSemaphore(cfg.max_pending)
    api_key = cfg.resolve_api_key()
    audit_path = Path(cfg.audit_log) if cfg.audit_log else None
    app = FastAPI(title="medllm clinical decision support", version="0.1.0", description=DISCLAIMER)
    app.state.engine = engine

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    app.add_middleware(BodyLimit, max_bytes=cfg.max_request_bytes)

    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, exc: BackendError):
        log.error("model backend failed: %s", exc)
        return JSONResponse({"detail": f"model backend unavailable: {exc}"}, status_code=502)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(
                401, "missing or wrong API key (Authorization: Bearer <key>)", headers={"WWW-Authenticate": "Bearer"}
            )

    def admitted():
        if not pending.acquire(blocking=False):
            raise HTTPException(
                503, "server busy: too many requests in flight, retry shortly", headers={"Retry-After": "5"}
            )
        try:
            yield
        finally:
            pending.release()

    def audit(request_id: str, body: str, started: float) -> None:
        if audit_path is None:
            return
        record = {
            "request_id": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": engine.name,
            "adapter": engine.adapter,
            "input_sha256": hashlib.sha256(body.encode()).hexdigest(),
            "latency_s": round(time.perf_counter() - started, 4),
        }
        with open(audit_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def refuse_injection(*texts: str) -> None:
        if any(injection_attempt(t) for t in texts):
            raise HTTPException(400, "input contains instructions addressed to the model; send clinical content only")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if not engine.ready():
            return JSONResponse({"status": "not ready", "model": engine.name}, status_code=503)
        return {"status": "ready", "model": engine.name, "adapter": engine.adapter}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    def models():
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "owned_by": "medllm"}]}

    @app.post("/v1/diagnose", response_model=DiagnoseResponse, dependencies=[Depends(authorize), Depends(admitted)])
    def diagnose(case: PatientCase):
        started, request_id = time.perf_counter(), uuid.uuid4().hex
        refuse_injection(case.note, *case.symptoms, *case.history, *case.medications)
        vignette = case.vignette()
        flags = red_flags(vignette, case.vitals.model_dump() if case.vitals else None)
        hits = index.search(vignette, config.prompt.num_candidates)
        total = sum(max(s, 0.0) for _, s in hits) or 1.0
        scores = {d.id: max(s, 0.0) / total for d, s in hits}
        messages = build_messages(vignette, [describe_candidate(d) for d, _ in hits], config.prompt.differential_size)
        answer, n_tokens = engine.complete(messages)
        # the model's order first, then any retrieved candidate it did not name
        named_by_model = matcher.rank(answer, len(hits) + config.prompt.differential_size)
        ranked = named_by_model[: config.prompt.differential_size]
        ranked = (ranked + [d.id for d, _ in hits if d.id not in ranked])[: config.prompt.differential_size]
        matches = index.evidence(vignette, ranked)
        differential = []
        for rank, disease_id in enumerate(ranked, 1):
            disease = by_id[disease_id]
            evidence = [
                Evidence(
                    source_id=disease.id, finding=m.finding, patient_finding=m.patient_phrase, similarity=m.similarity
                )
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
        similar = cases.search(vignette, cfg.similar_cases) if cases is not None and cfg.similar_cases else []
        top = by_id[ranked[0]] if ranked else None
        audit(request_id, case.model_dump_json(), started)
        return DiagnoseResponse(
            request_id=request_id,
            differential=differential,
            red_flags=[vars(f) for f in flags],
            urgent_care=URGENT_CARE if flags else None,
            next_steps=_next_steps(top, bool(flags)),
            similar_cases=[
                SimilarCase(source_id=c["id"], title=c["title"], score=round(score, 4)) for c, score in similar
            ],
            model=engine.name,
            adapter=engine.adapter,
            completion_tokens=n_tokens,
        )

    def chat_messages(turns: list[ChatMessage], system: str | None = None) -> list[dict]:
        """Our system prompt, then the client's turns; client system turns are not passed on."""
        refuse_injection(*(m.content for m in turns), system or "")
        return [{"role": "system", "content": SYSTEM_PROMPT}] + [m.model_dump() for m in turns if m.role != "system"]

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize), Depends(admitted)])
    def chat_completions(body: ChatRequest):
        started, request_id = time.perf_counter(), f"chatcmpl-{uuid.uuid4().hex}"
        messages = chat_messages(body.messages)
        created = int(time.time())
        audit(request_id, body.model_dump_json(), started)
        if not body.stream:
            text, n_tokens = engine.complete(messages, body.max_tokens)
            return {
                "id": request_id,
                "object": "chat.completion",
                "created": created,
                "model": engine.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": n_tokens},
            }

        def events():
            def chunk(delta: dict, finish: str | None = None) -> str:
                payload = {
                    "id": request_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": engine.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(payload)}\n\n"

            yield chunk({"role": "assistant", "content": ""})
            for piece in engine.stream(messages, body.max_tokens):
                if piece:
                    yield chunk({"content": piece})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # Ollama's REST shape, so Ollama clients (the `ollama` package, Open WebUI) work unchanged.
    def ollama_reply(messages: list[dict], options: OllamaOptions, stream: bool, wrap) -> object:
        limit = options.num_predict

        def stamp() -> dict:
            return {"model": engine.name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

        if not stream:
            text, n_tokens = engine.complete(messages, limit)
            return {**stamp(), **wrap(text), "done": True, "done_reason": "stop", "eval_count": n_tokens}

        def lines():
            for piece in engine.stream(messages, limit):
                if piece:
                    yield json.dumps({**stamp(), **wrap(piece), "done": False}) + "\n"
            yield json.dumps({**stamp(), **wrap(""), "done": True, "done_reason": "stop"}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    details = {"format": "safetensors", "family": "llama", "families": ["llama"]}

    @app.get("/api/tags", dependencies=[Depends(authorize)])
    def ollama_tags():
        return {
            "models": [
                {
                    "name": engine.name,
                    "model": engine.name,
                    "modified_at": "1970-01-01T00:00:00Z",
                    "size": 0,
                    "digest": "",
                    "details": details,
                }
            ]
        }

    @app.post("/api/show", dependencies=[Depends(authorize)])
    def ollama_show(body: OllamaShowRequest):
        if body.model != engine.name:
            return JSONResponse({"error": f"model '{body.model}' not found"}, status_code=404)
        return {
            "details": details,
            "model_info": {},
            "capabilities": ["completion"],
            "modified_at": "1970-01-01T00:00:00Z",
        }

    @app.post("/api/chat", dependencies=[Depends(authorize), Depends(admitted)])
    def ollama_chat(body: OllamaChatRequest):
        started = time.perf_counter()
        messages = chat_messages(body.messages)
        audit(uuid.uuid4().hex, body.model_dump_json(), started)
        return ollama_reply(
            messages, body.options, body.stream, lambda text: {"message": {"role": "assistant", "content": text}}
        )

    @app.post("/api/generate", dependencies=[Depends(authorize), Depends(admitted)])
    def ollama_generate(body: OllamaGenerateRequest):
        started = time.perf_counter()
        messages = chat_messages([ChatMessage(role="user", content=body.prompt)], body.system)
        audit(uuid.uuid4().hex, body.model_dump_json(), started)
        return ollama_reply(messages, body.options, body.stream, lambda text: {"response": text})

    return app


def load_backend(config: Config, adapter: Path | None = None) -> Backend:
    """The model behind the API: ``serve.backend`` transformers (+ adapter) or ollama."""
    cfg = config.serve
    if cfg.backend == "ollama":
        if not cfg.ollama_model:
            raise MedllmError("serve.backend ollama needs serve.ollama_model (e.g. --serve.ollama_model you/medllm)")
        return OllamaEngine(cfg.ollama_url, cfg.ollama_model, cfg.max_new_tokens, cfg.timeout_s)
    from medllm.models import load_model, load_tokenizer

    adapter = config.run.adapter_or_default(adapter)
    use_adapter = is_adapter(adapter)
    if not use_adapter:
        log.warning("no adapter at %s: serving the base model", adapter)
    return Engine(
        load_model(config.model, adapter if use_adapter else None),
        load_tokenizer(config.model),
        name=config.model.name,
        adapter=str(adapter) if use_adapter else None,
        max_new_tokens=cfg.max_new_tokens,
        timeout_s=cfg.timeout_s,
    )


def serve(config: Config, adapter: Path | None = None) -> None:
    """Load the model (and adapter) and run the API under uvicorn."""
    import uvicorn

    from medllm.data.build import load_index

    index, cases = load_index(config)
    app = create_app(load_backend(config, adapter), index, config, cases)
    uvicorn.run(app, host=config.serve.host, port=config.serve.port, log_level="info", access_log=False)
