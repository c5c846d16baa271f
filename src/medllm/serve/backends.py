"""The model behind the API: in-process transformers or llama.cpp, an Ollama server, or any OpenAI-compatible
server."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.run import is_adapter

log = logging.getLogger(__name__)


class BackendError(MedllmError):
    """The model backend failed or cannot be reached (answered as 502)."""


class Backend(Protocol):
    """What the API needs from a model: a name, answers whole or streamed, and whether it scores candidates
    (``loglikelihoods(messages, answers)``, the re-ranker's input)."""

    name: str
    adapter: str | None
    scores_candidates: bool

    def ready(self) -> bool: ...

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]: ...

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]: ...


@dataclass
class Engine:
    """The model loaded in-process (transformers): concurrent requests generate in padded batches of up to
    ``max_batch`` (:class:`~medllm.serve.batching.GenerationBatcher`); streams run one at a time."""

    model: object
    tokenizer: object
    name: str
    adapter: str | None
    max_new_tokens: int
    timeout_s: float
    max_batch: int = 1
    batch_wait_s: float = 0.01
    scores_candidates = True

    def __post_init__(self):
        from medllm.serve.batching import GenerationBatcher

        self._lock = threading.Lock()
        self.batcher = GenerationBatcher(self._generate_batch, self.max_batch, self.batch_wait_s)

    def ready(self) -> bool:
        return True

    def _inputs(self, messages: list[dict] | list[list[dict]]):
        batch = [messages] if messages and isinstance(messages[0], dict) else messages
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(self.model.device)

    def _limit(self, max_new_tokens: int | None) -> int:
        return min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)

    def _kwargs(self, max_new_tokens: int) -> dict:
        return {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "max_time": self.timeout_s,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }

    def _generate_batch(self, batch: list[list[dict]], limits: list[int]) -> list[tuple[str, int]]:
        """Greedy answers of a left-padded batch, each cut to its own token limit and first end-of-sequence."""
        import torch

        inputs = self._inputs(batch)
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, **self._kwargs(max(limits)))
        answers = []
        for row, limit in zip(output[:, inputs["input_ids"].shape[1] :].tolist(), limits):
            row = row[:limit]
            if self.tokenizer.eos_token_id in row:
                row = row[: row.index(self.tokenizer.eos_token_id) + 1]
            answers.append((self.tokenizer.decode(row, skip_special_tokens=True).strip(), len(row)))
        return answers

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]:
        """The answer text and its number of tokens (generated in a batch with any concurrent requests)."""
        return self.batcher.submit(messages, self._limit(max_new_tokens))

    def loglikelihoods(self, messages: list[dict], answers: list[str]) -> list[tuple[float, int]]:
        """Each answer's log-likelihood (and token count) after ``messages``, in one batch: the re-ranker's input."""
        from medllm.generation import shared_prompt_loglikelihoods

        with self._lock:
            return shared_prompt_loglikelihoods(self.model, self.tokenizer, messages, answers)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run():
            with self._lock:
                self.model.generate(**inputs, **self._kwargs(self._limit(max_new_tokens)), streamer=streamer)

        threading.Thread(target=run, daemon=True).start()
        yield from streamer


class LlamaCppEngine:
    """The exported GGUF in-process in llama.cpp (``llama-cpp-python``): chat template and stop tokens from the
    file; greedy answers and the re-ranker's log-likelihoods. ``parallel`` contexts over the same memory-mapped
    weights answer as many requests at once (llama-server's ``--parallel`` slots), each one request at a time."""

    def __init__(self, path: Path, max_new_tokens: int, n_ctx: int, n_threads: int | None, parallel: int = 1):
        from medllm.llamacpp import open_gguf

        self._contexts: queue.Queue = queue.Queue()
        for _ in range(parallel):
            self._contexts.put(open_gguf(path, n_ctx, n_threads))
        self.name, self.adapter, self.max_new_tokens = path.name, None, max_new_tokens
        self.scores_candidates = True

    def ready(self) -> bool:
        return True

    @contextmanager
    def _context(self):
        """A free context, held for the request (waits while all are answering others)."""
        llm = self._contexts.get()
        try:
            yield llm
        finally:
            self._contexts.put(llm)

    def _chat(self, llm, messages: list[dict], max_new_tokens: int | None, stream: bool):
        from medllm.llamacpp import ContextExceeded

        limit = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        try:
            return llm.create_chat_completion(messages, max_tokens=limit, temperature=0, stream=stream)
        except ValueError as exc:  # llama-cpp-python's "Requested tokens (N) exceed context window of M"
            raise ContextExceeded(f"{self.name}: {exc}") from None

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]:
        with self._context() as llm:
            reply = self._chat(llm, messages, max_new_tokens, stream=False)
        return reply["choices"][0]["message"]["content"].strip(), reply["usage"]["completion_tokens"]

    def loglikelihoods(self, messages: list[dict], answers: list[str]) -> list[tuple[float, int]]:
        """Each answer's log-likelihood (and token count) after ``messages``, the prompt evaluated once."""
        from medllm.llamacpp import loglikelihoods

        with self._context() as llm:
            return loglikelihoods(llm, messages, answers)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        with self._context() as llm:
            for chunk in self._chat(llm, messages, max_new_tokens, stream=True):
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text


class OllamaEngine:
    """A model served by an Ollama server (e.g. the one ``medllm export`` published), over HTTP."""

    def __init__(self, url: str, model: str, max_new_tokens: int, timeout_s: float):
        import httpx
        import ollama

        self.name, self.adapter, self.max_new_tokens = model, None, max_new_tokens
        self.scores_candidates = False  # Ollama returns log-probabilities of generated tokens only
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


class OpenAIEngine:
    """A model behind any OpenAI-compatible server (vLLM, llama.cpp's server, TGI, LM Studio, Ollama's ``/v1``),
    through the official ``openai`` client: greedy chat completions, whole or streamed, and the re-ranker's
    candidate log-likelihoods where the server echoes a prompt's log-probabilities (``/v1/completions`` with
    ``echo`` and ``logprobs``, as vLLM and llama-cpp-python's server do; lm-evaluation-harness scores the same
    way). Scoring renders the chat prompt with ``tokenizer``, the served model's own (its chat template)."""

    def __init__(
        self,
        base_url: str,
        model: str | None,
        max_new_tokens: int,
        timeout_s: float,
        api_key: str | None,
        tokenizer=None,
    ):
        import openai

        # servers that need no key still want the header: "none" is what their docs use
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)
        self._errors = (openai.OpenAIError,)
        self._unreachable = (openai.APIConnectionError, openai.InternalServerError)
        self._bad_request = openai.BadRequestError
        self._url, self._model, self._tokenizer = base_url, model, tokenizer
        self._scoring: bool | None = None if tokenizer is not None else False  # None: not asked yet
        self.adapter, self.max_new_tokens = None, max_new_tokens

    @property
    def name(self) -> str:
        return self._model or "(the server's first model)"

    def _fail(self, exc: Exception) -> MedllmError:
        """The server's failure named: a prompt past its context (OpenAI's ``context_length_exceeded``, as vLLM
        and llama-cpp-python's server answer) as :class:`ContextExceeded`, anything else as a backend error."""
        from medllm.llamacpp import ContextExceeded

        where = f"OpenAI-compatible server at {self._url} (model {self.name})"
        if isinstance(exc, self._bad_request) and (exc.code == "context_length_exceeded" or "context" in exc.message):
            return ContextExceeded(f"{where}: {exc.message}")
        return BackendError(f"{where}: {exc}")

    def ready(self) -> bool:
        """The server answers and serves the model (the first one it lists when none was named)."""
        try:
            served = [m.id for m in self._client.models.list()]
        except self._errors:
            return False
        if self._model is None and served:
            self._model = served[0]
        return self._model in served

    @property
    def scores_candidates(self) -> bool:
        """Whether the server echoes prompt log-probabilities; asked once it answers (a server that is down is
        asked again next time, one that refuses or answers without them is not)."""
        if self._scoring is None and self.ready():
            try:
                self._prompt_logprobs("Fever")
                self._scoring = True
            except BackendError as exc:
                if not isinstance(exc.__cause__, self._unreachable):
                    log.info("no candidate scoring through %s: %s", self._url, exc)
                    self._scoring = False
        return bool(self._scoring)

    def _prompt_logprobs(self, text: str) -> list[float]:
        """The log-probability of each of ``text``'s tokens after the ones before it, as the server tokenises it."""
        try:
            reply = self._client.completions.create(
                model=self._model, prompt=text, max_tokens=1, temperature=0, echo=True, logprobs=1
            )
        except self._errors as exc:
            raise self._fail(exc) from exc
        try:
            values = reply.choices[0].logprobs.token_logprobs
            generated = reply.usage.completion_tokens
            assert values and len(values) > generated, "no log-probabilities for the prompt's tokens"
        except (AttributeError, IndexError, TypeError, AssertionError) as exc:
            raise self._fail(ValueError(f"not an echoed completion with log-probabilities ({exc})")) from exc
        return values[: len(values) - generated]

    def loglikelihoods(self, messages: list[dict], answers: list[str]) -> list[tuple[float, int]]:
        """Each answer's log-likelihood (and token count) after ``messages``: one request per answer, sent at once
        (a server with parallel slots or continuous batching runs them together). The answers are tokenised on
        their own, as the in-process backends do, and their tokens are the last of each echoed prompt."""
        from concurrent.futures import ThreadPoolExecutor

        prompt = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        counts = [len(self._tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
        with ThreadPoolExecutor(max(1, len(answers))) as pool:
            echoed = list(pool.map(self._prompt_logprobs, [prompt + a for a in answers]))
        return [(float(sum(values[-n:])), n) for values, n in zip(echoed, counts)]

    def _call(self, messages: list[dict], max_new_tokens: int | None, stream: bool):
        if self._model is None and not self.ready():
            raise BackendError(f"OpenAI-compatible server at {self._url}: no model is served or it cannot be reached")
        limit = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        try:
            return self._client.chat.completions.create(
                model=self._model, messages=messages, max_tokens=limit, temperature=0, stream=stream
            )
        except self._errors as exc:
            raise self._fail(exc) from None

    def complete(self, messages: list[dict], max_new_tokens: int | None = None) -> tuple[str, int]:
        reply = self._call(messages, max_new_tokens, stream=False)
        try:
            text = reply.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise self._fail(ValueError(f"not a chat completion ({exc})")) from None
        usage = getattr(reply, "usage", None)
        return text.strip(), (usage.completion_tokens if usage and usage.completion_tokens else 0)

    def stream(self, messages: list[dict], max_new_tokens: int | None = None) -> Iterator[str]:
        try:
            for chunk in self._call(messages, max_new_tokens, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except self._errors as exc:
            raise self._fail(exc) from None


def default_gguf(export_dir: Path) -> Path:
    """The GGUF ``medllm export`` wrote to ``export_dir``: its q8_0 file, else f16, else the first type."""
    summary = export_dir / "export.json"
    if not summary.is_file():
        raise MedllmError(f"serve.backend llamacpp: no {summary}; run `medllm export` or set serve.gguf")
    files = json.loads(summary.read_text(encoding="utf-8")).get("gguf", {})
    for type_name in ("q8_0", "f16", *files):
        if type_name in files:
            return export_dir / files[type_name]["file"]
    raise MedllmError(f"serve.backend llamacpp: {summary} lists no GGUF file")


def load_backend(config: Config, adapter: Path | None = None) -> Backend:
    """The model behind the API: ``serve.backend`` transformers (+ adapter), llamacpp, ollama or openai."""
    cfg = config.serve
    if cfg.backend == "llamacpp":
        path = Path(cfg.gguf) if cfg.gguf else default_gguf(config.run.export)
        return LlamaCppEngine(path, cfg.max_new_tokens, cfg.n_ctx, cfg.n_threads, cfg.n_parallel)
    if cfg.backend == "openai":
        if not cfg.openai_base_url:
            raise MedllmError(
                "serve.backend openai needs serve.openai_base_url (e.g. --base-url http://127.0.0.1:8080/v1)"
            )
        from medllm.models import load_tokenizer

        key = os.environ.get(cfg.openai_api_key_env) if cfg.openai_api_key_env else None
        tokenizer = load_tokenizer(config.model)  # the served model's chat template, for candidate scoring
        return OpenAIEngine(cfg.openai_base_url, cfg.openai_model, cfg.max_new_tokens, cfg.timeout_s, key, tokenizer)
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
        max_batch=cfg.max_batch,
        batch_wait_s=cfg.batch_wait_ms / 1000,
    )
