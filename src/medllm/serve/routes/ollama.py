"""Ollama's REST shape, so Ollama clients (the ``ollama`` package, Open WebUI) work unchanged.

``POST /api/chat`` and ``POST /api/generate`` (newline-delimited JSON streams
by default), ``GET /api/tags`` and ``POST /api/show``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from medllm.serve.backends import Backend
from medllm.serve.dependencies import State, admitted, authorize, chat_messages
from medllm.serve.schemas import ChatMessage, OllamaChatRequest, OllamaGenerateRequest, OllamaOptions, OllamaShowRequest

router = APIRouter()

DETAILS = {"format": "safetensors", "family": "llama", "families": ["llama"]}


def ollama_reply(
    engine: Backend, messages: list[dict], options: OllamaOptions, stream: bool, wrap: Callable[[str], dict]
) -> object:
    """The answer as one JSON object, or streamed as JSON lines; ``wrap`` puts text where the endpoint has it."""
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


@router.get("/api/tags", dependencies=[Depends(authorize)])
def ollama_tags(state: State):
    name = state.engine.name
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": "1970-01-01T00:00:00Z",
                "size": 0,
                "digest": "",
                "details": DETAILS,
            }
        ]
    }


@router.post("/api/show", dependencies=[Depends(authorize)])
def ollama_show(body: OllamaShowRequest, state: State):
    if body.model != state.engine.name:
        return JSONResponse({"error": f"model '{body.model}' not found"}, status_code=404)
    return {"details": DETAILS, "model_info": {}, "capabilities": ["completion"], "modified_at": "1970-01-01T00:00:00Z"}


@router.post("/api/chat", dependencies=[Depends(authorize), Depends(admitted)])
def ollama_chat(body: OllamaChatRequest, state: State):
    started = time.perf_counter()
    messages = chat_messages(body.messages)
    state.audit(uuid.uuid4().hex, body.model_dump_json(), started)
    return ollama_reply(
        state.engine,
        messages,
        body.options,
        body.stream,
        lambda text: {"message": {"role": "assistant", "content": text}},
    )


@router.post("/api/generate", dependencies=[Depends(authorize), Depends(admitted)])
def ollama_generate(body: OllamaGenerateRequest, state: State):
    started = time.perf_counter()
    messages = chat_messages([ChatMessage(role="user", content=body.prompt)], body.system)
    state.audit(uuid.uuid4().hex, body.model_dump_json(), started)
    return ollama_reply(state.engine, messages, body.options, body.stream, lambda text: {"response": text})
