"""An exported GGUF in llama.cpp (``llama-cpp-python``, the optional extra ``medllm[llamacpp]``): opened with a
one-line error for a bad file, the chat prompt rendered by the file's own template, and float32 log-likelihoods
of continuations with the prompt evaluated once.

Used by the ``llamacpp`` serving backend and by the export's check of each GGUF in the runtime users run it in.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from scipy.special import log_softmax

from medllm.errors import MedllmError


class ContextExceeded(MedllmError):
    """A prompt (with its answer) longer than the model's context window (answered as 413)."""


def require_llama_cpp():
    """The ``llama_cpp`` module, or an error saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise MedllmError("the llamacpp backend needs llama-cpp-python: pip install 'medllm[llamacpp]'") from None
    return llama_cpp


def check_gguf(path: Path) -> None:
    """A readable GGUF of the Llama architecture at ``path``, or an error naming the file and what is wrong."""
    import gguf

    if not path.is_file():
        raise MedllmError(f"{path}: GGUF file not found (write one with `medllm export`)")
    try:
        reader = gguf.GGUFReader(path)
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode()
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise MedllmError(f"{path}: not a readable GGUF file ({exc.__class__.__name__}: {exc})") from None
    if architecture != "llama":
        raise MedllmError(f"{path}: a {architecture!r} GGUF; medllm serves Llama-architecture models only")


@contextmanager
def _without_extra_buffers(llama_cpp):
    """Model parameters with ``use_extra_bufts`` off, which ``Llama()`` does not expose: llama.cpp's AMX int8
    repacking buffer crashed in ``llama_decode`` on every Q8_0 model on an AMX CPU."""
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        value = default()
        value.use_extra_bufts = False
        return value

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = default


def open_gguf(path: str | Path, n_ctx: int = 2048, n_threads: int | None = None, lora: Path | None = None):
    """The GGUF in llama.cpp, keeping every position's logits (``logits_all``: what scoring reads); ``lora``: a GGUF
    LoRA applied at full scale."""
    llama_cpp = require_llama_cpp()
    path = Path(path)
    check_gguf(path)
    with _without_extra_buffers(llama_cpp):
        try:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                logits_all=True,
                lora_path=str(lora) if lora else None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:  # RuntimeError: an adapter it cannot apply
            loaded = f"{path} with {lora}" if lora else str(path)
            raise MedllmError(f"{loaded}: llama.cpp cannot load it ({exc})") from None


def prompt_tokens(llm, messages: list[dict]) -> list[int]:
    """``messages`` rendered by the GGUF's chat template with the generation prompt, as llama-cpp-python's chat
    handler tokenises them (special tokens parsed, BOS only where the template does not write it)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        raise MedllmError(f"{llm.model_path}: the GGUF has no chat template (tokenizer.chat_template)")
    vocab = llm._model
    formatter = Jinja2ChatFormatter(
        template, eos_token=vocab.token_get_text(llm.token_eos()), bos_token=vocab.token_get_text(llm.token_bos())
    )
    rendered = formatter(messages=messages)
    return llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)


def loglikelihoods(llm, messages: list[dict], continuations: list[str]) -> list[tuple[float, int]]:
    """Summed float32 log-likelihood (and token count) of each continuation as the assistant's answer.

    The prompt is evaluated once; each continuation then runs from its cached state (llama-cpp-python's
    ``eval`` drops the key/value cache past ``n_tokens``). Continuations are tokenised on their own, as
    :func:`medllm.generation.shared_prompt_loglikelihoods` does, so both backends score the same tokens.
    """
    prompt = prompt_tokens(llm, messages)
    targets = [llm.tokenize(c.encode(), add_bos=False, special=False) for c in continuations]
    longest = len(prompt) + max(map(len, targets), default=0)
    if longest > llm.n_ctx():
        raise ContextExceeded(f"prompt and answer of {longest} tokens exceed the context window of {llm.n_ctx()}")
    llm.reset()
    llm.eval(prompt)
    last = llm.scores[len(prompt) - 1].copy()
    scores = []
    for target in targets:
        llm.n_tokens = len(prompt)
        llm.eval(target)
        rows = np.vstack([last, llm.scores[len(prompt) : len(prompt) + len(target) - 1]])
        logprobs = log_softmax(rows.astype(np.float32, copy=False), axis=-1)
        scores.append((float(logprobs[np.arange(len(target)), target].sum()), len(target)))
    return scores


def position_logits(llm, ids: list[int]) -> np.ndarray:
    """float32 logits at every position of ``ids``, evaluated from an empty cache."""
    if len(ids) > llm.n_ctx():
        raise ContextExceeded(f"{len(ids)} tokens exceed the context window of {llm.n_ctx()}")
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def greedy_tokens(llm, ids: list[int], max_tokens: int) -> list[int]:
    """The first ``max_tokens`` greedy tokens after ``ids`` (the end-of-sequence token included, then stop),
    as transformers' greedy ``generate`` gives them."""
    llm.reset()
    llm.eval(ids)
    tokens = []
    while len(tokens) < max_tokens:
        tokens.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        if tokens[-1] == llm.token_eos():
            break
        llm.eval(tokens[-1:])
    return tokens
