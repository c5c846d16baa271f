"""OpenAI's shape: ``POST /v1/chat/completions`` (whole, or streamed as server-sent events) and ``GET /v1/models``."""

from __future__ import annotations

import json
import time
import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from medllm.serve.dependencies import State, admitted, authorize, chat_messages
from medllm.serve.schemas import ChatRequest

router = APIRouter()


@router.get("/v1/models", dependencies=[Depends(authorize)])
def models(state: State):
    return {"object": "list", "data": [{"id": state.engine.name, "object": "model", "owned_by": "medllm"}]}


@router.post("/v1/chat/completions", dependencies=[Depends(authorize), Depends(admitted)])
def chat_completions(body: ChatRequest, state: State):
    engine = state.engine
    started, request_id = time.perf_counter(), f"chatcmpl-{uuid.uuid4().hex}"
    messages = chat_messages(body.messages)
    created = int(time.time())
    state.audit(request_id, body.model_dump_json(), started)
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

    def chunk(delta: dict, finish: str | None = None) -> str:
        payload = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": engine.name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload)}\n\n"

    def events():
        yield chunk({"role": "assistant", "content": ""})
        for piece in engine.stream(messages, body.max_tokens):
            if piece:
                yield chunk({"content": piece})
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
