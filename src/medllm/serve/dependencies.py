"""What the routes share: the app's state, and the checks every request passes.

The state is built once by ``create_app`` and kept on ``app.state.serve``;
routes get it (and the API-key and load checks) as FastAPI dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from medllm.config import Config
from medllm.phenotype.explain import Explainer
from medllm.phenotype.fusion import Fusion, serving_fusion
from medllm.phenotype.lexicon import Lexicon, lexicon_for
from medllm.phenotype.rank import Ranker
from medllm.prompts import SYSTEM_PROMPT
from medllm.retrieval import CaseIndex, DiseaseIndex
from medllm.safety import injection_attempt
from medllm.serve.backends import Backend
from medllm.serve.schemas import ChatMessage


@dataclass
class ServeState:
    """The model, the retrieval indexes, the phenotype ranker and the serving settings behind the routes."""

    engine: Backend
    index: DiseaseIndex
    config: Config
    cases: CaseIndex | None
    ranker: Ranker
    explainer: Explainer
    lexicon: Lexicon  # for recognising HPO findings in the patient fields
    fusion: Fusion | None  # the model re-ranks the phenotype ranking's top K (None: the phenotype ranking alone)
    disease_rows: dict[str, int]  # every disease id of the knowledge base (merged ids too) → its row
    pending: threading.BoundedSemaphore
    api_key: str | None
    audit_path: Path | None

    @classmethod
    def build(
        cls, engine: Backend, index: DiseaseIndex, config: Config, cases: CaseIndex | None, ranker: Ranker
    ) -> ServeState:
        cfg = config.serve
        return cls(
            engine=engine,
            index=index,
            config=config,
            cases=cases,
            ranker=ranker,
            explainer=Explainer(ranker.kb),
            lexicon=lexicon_for(ranker.kb),
            fusion=serving_fusion(config.rerank, config.run.rerank, engine.adapter),
            disease_rows=ranker.kb.id_rows(),
            pending=threading.BoundedSemaphore(cfg.max_pending),
            api_key=cfg.resolve_api_key(),
            audit_path=Path(cfg.audit_log) if cfg.audit_log else None,
        )

    @property
    def reranks(self) -> bool:
        """Whether ``/v1/diagnose`` serves the fused order: a fusion is set and the backend scores candidates."""
        return self.fusion is not None and self.engine.scores_candidates

    def audit(self, request_id: str, body: str, started: float) -> None:
        """One audit line (no patient text: a hash of the body) when ``serve.audit_log`` is set."""
        if self.audit_path is None:
            return
        record = {
            "request_id": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": self.engine.name,
            "adapter": self.engine.adapter,
            "input_sha256": hashlib.sha256(body.encode()).hexdigest(),
            "latency_s": round(time.perf_counter() - started, 4),
        }
        with open(self.audit_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(serve_state)]


def authorize(state: State, request: Request) -> None:
    """401 unless the bearer token is the configured API key (no key configured: open)."""
    if state.api_key is None:
        return
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), state.api_key.encode()):
        raise HTTPException(
            401, "missing or wrong API key (Authorization: Bearer <key>)", headers={"WWW-Authenticate": "Bearer"}
        )


def admitted(state: State):
    """503 at once when ``serve.max_pending`` requests are already in flight."""
    if not state.pending.acquire(blocking=False):
        raise HTTPException(
            503, "server busy: too many requests in flight, retry shortly", headers={"Retry-After": "5"}
        )
    try:
        yield
    finally:
        state.pending.release()


def refuse_injection(*texts: str) -> None:
    if any(injection_attempt(t) for t in texts):
        raise HTTPException(400, "input contains instructions addressed to the model; send clinical content only")


def chat_messages(turns: list[ChatMessage], system: str | None = None) -> list[dict]:
    """Our system prompt, then the client's turns; client system turns are not passed on."""
    refuse_injection(*(m.content for m in turns), system or "")
    return [{"role": "system", "content": SYSTEM_PROMPT}] + [m.model_dump() for m in turns if m.role != "system"]
