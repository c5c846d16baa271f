"""Step 3, length: records of more or fewer tokens than the bounds dropped, counted as the model will be
trained on them (prompt and reference through the chat template)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from medllm.data.curate.tally import Drop, Keep, Tally, counted

log = logging.getLogger(__name__)

_SLOT = "\x00medllm-slot-{}\x00"  # stands for a message's content while the chat template is rendered once


def _template_parts(tokenizer, roles: tuple[str, ...]) -> list[str] | None:
    """The chat template's text around the contents of a conversation with these roles, or None where the
    template does more than paste each content in.

    Rendered once with placeholder contents padded with whitespace: each must
    come out once, in order and untouched (a template that trims, escapes or
    repeats a content gets None, and each conversation is rendered).
    """
    padded = [f" \t\n{_SLOT.format(i)}\n\t " for i in range(len(roles))]
    try:
        text = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in zip(roles, padded)], tokenize=False)
    except Exception:  # rejected placeholders: each conversation is rendered (and any error raised there)
        return None
    if not isinstance(text, str):
        return None
    parts = []
    for slot in padded:
        before, found, text = text.partition(slot)
        if not found:
            return None
        parts.append(before)
    parts.append(text)
    return None if any("medllm-slot-" in part for part in parts) else parts


def _paste(parts: list[str], contents: list[str]) -> str:
    """``parts`` (:func:`_template_parts`) with the contents in between."""
    pieces = [parts[0]]
    for content, part in zip(contents, parts[1:]):
        pieces += (content, part)
    return "".join(pieces)


def training_texts(records: list[dict], tokenizer) -> list[str]:
    """Each record as the model will be trained on it: prompt and reference through the chat template, or,
    for a tokenizer without one, the contents joined by blank lines.

    The template is rendered once per batch and combination of roles, and each
    conversation's contents are pasted into its text (:func:`_template_parts`);
    the first conversation is also rendered in full and must come out the same,
    else every conversation is rendered.
    """
    conversations = [[*r["messages"], {"role": "assistant", "content": r["reference"]}] for r in records]
    if not getattr(tokenizer, "chat_template", None):
        return ["\n\n".join(m["content"] for m in c) for c in conversations]
    texts: list[str | None] = [None] * len(conversations)
    by_roles: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, conversation in enumerate(conversations):
        by_roles[tuple(m["role"] for m in conversation)].append(i)
    for roles, indices in by_roles.items():
        parts = _template_parts(tokenizer, roles)
        if parts is not None:
            pasted = [_paste(parts, [m["content"] for m in conversations[i]]) for i in indices]
            if pasted[0] == tokenizer.apply_chat_template(conversations[indices[0]], tokenize=False):
                for i, text in zip(indices, pasted):
                    texts[i] = text
                continue
        for i in indices:
            texts[i] = tokenizer.apply_chat_template(conversations[i], tokenize=False)
    return texts


def _rust_tokenizer(tokenizer):
    """The ``tokenizers.Tokenizer`` behind a fast tokenizer when calling it directly gives the ids
    ``tokenizer(texts)`` gives (no truncation, padding or special-token splitting set on it), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    if bool(getattr(backend, "encode_special_tokens", False)) != bool(
        getattr(tokenizer, "split_special_tokens", False)
    ):
        return None
    return backend


def token_lengths(records: list[dict], tokenizer) -> list[int]:
    """Token counts of :func:`training_texts`, tokenized as one batch (a fast tokenizer runs it in Rust,
    without the offsets and Python objects a full encoding carries)."""
    if not records:
        return []
    texts = training_texts(records, tokenizer)
    special = not getattr(tokenizer, "chat_template", None)  # a chat template writes its own special tokens
    backend = _rust_tokenizer(tokenizer)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=special)]
    ids = tokenizer(texts, add_special_tokens=special, return_attention_mask=False, verbose=False)["input_ids"]
    return [len(i) for i in ids]


def length_filter(
    records: Iterable[dict],
    tokenizer,
    min_tokens: int,
    max_tokens: int,
    tally: Tally | None = None,
    batch_size: int = 256,
    lengths: dict[str, int] | None = None,
) -> Iterator[dict]:
    """Keep records of ``min_tokens`` to ``max_tokens`` tokens (:func:`token_lengths`), in batches of
    ``batch_size``; ``too_short`` and ``too_long`` are counted. ``lengths``, when given, is filled with
    id → token count of the records kept (ints: the data card's histogram)."""
    return counted(_length_verdicts(records, tokenizer, min_tokens, max_tokens, batch_size, lengths), tally)


def _length_verdicts(
    records: Iterable[dict], tokenizer, min_tokens: int, max_tokens: int, batch_size: int, lengths: dict | None
) -> Iterator[tuple[dict, Keep | Drop]]:
    """A batch is tokenized in a second thread while the next one is read (a fast tokenizer leaves Python free
    meanwhile), so on two cores the tokenizer mostly runs beside the steps before and after it."""
    if not getattr(tokenizer, "is_fast", False):
        log.warning("length filter: %s is not a fast tokenizer; tokenizing will be slow", type(tokenizer).__name__)
    records = iter(records)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medllm-tokenize") as pool:
        pending = None
        while True:
            batch = list(islice(records, batch_size))
            ahead = (batch, pool.submit(token_lengths, batch, tokenizer)) if batch else None
            if pending is not None:
                yield from _judge_lengths(*pending, min_tokens, max_tokens, lengths)
            if ahead is None:
                break
            pending = ahead


def _judge_lengths(
    batch: list[dict], token_counts: Future, min_tokens: int, max_tokens: int, lengths: dict[str, int] | None
) -> Iterator[tuple[dict, Keep | Drop]]:
    for record, n in zip(batch, token_counts.result()):
        if n < min_tokens:
            yield record, Drop("too_short", {"tokens": n})
        elif n > max_tokens:
            yield record, Drop("too_long", {"tokens": n})
        else:
            if lengths is not None:
                lengths[record["id"]] = n
            yield record, Keep(record)
