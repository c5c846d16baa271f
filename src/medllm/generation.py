"""Batched greedy generation and log-likelihood scoring of candidate answers.

Shared by ``medllm eval`` (diagnosis conditions, safety set, free-text Q&A),
the validation callback of ``medllm train`` and the benchmarks. Rows are
sorted by length and left-padded, so a batch wastes little on padding.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from scipy.special import softmax
from tqdm.auto import tqdm

ANSWER_PREFIX = "1."


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``position_ids`` of token ``rows``, left-padded to the longest.

    Every row ends at the last column, so the next token's logits are the last
    position's; positions count from each row's first real token.
    """
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[r, width - len(row) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@contextmanager
def adapter_mode(model, which: str):
    """Run ``model`` as the base model (``"base"``: adapter off) or as fine-tuned (``"finetuned"``).

    Fine-tuned, the LoRA weights are merged into float32 base weights for the
    duration (about a third faster to decode on this CPU, same greedy answers)
    and unmerged after: in float32 the round trip changes a weight by at most
    a rounding step. Lower-precision base weights keep the adapter unmerged,
    where the round trip would not be exact.
    """
    if not hasattr(model, "disable_adapter"):
        yield model
    elif which == "base":
        with model.disable_adapter():
            yield model
    elif model.dtype == torch.float32:
        model.merge_adapter()
        try:
            yield model
        finally:
            model.unmerge_adapter()
    else:
        yield model


@torch.inference_mode()
def generate_answers(
    model,
    tokenizer,
    conversations: list[list[dict]],
    batch_size: int,
    max_new_tokens: int,
    stop_strings: list[str] | None = None,
    desc: str = "generate",
) -> list[str]:
    """Greedy answers for chat ``conversations``, batched by similar length.

    Generation of a row ends at the end-of-turn token or at any of ``stop_strings``.
    """
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    answers: list[str] = [""] * len(texts)
    tokenizer.padding_side = "left"
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=stop_strings,
            tokenizer=tokenizer,
        )
        width = batch["input_ids"].shape[1]
        for i, text in zip(idx, tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)):
            answers[i] = text.strip()
    return answers


@torch.inference_mode()
def candidate_loglikelihoods(
    model, tokenizer, conversations: list[list[dict]], candidates: list[list[str]], batch_size: int, desc: str = "score"
) -> list[list[tuple[float, int]]]:
    """Log-likelihood (sum, token count) of each candidate name as the answer's first line.

    One prompt pass per batch, then :func:`_score_names` on its key/value
    cache. (Reusing the cache that generation built, cropped back to the
    prompt, measured slower here than this fresh pass.)
    """
    prompts = [
        tokenizer(
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True), add_special_tokens=False
        )["input_ids"]
        for c in conversations
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    scores: list[list[tuple[float, int]]] = [[] for _ in prompts]
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[start : start + batch_size]
        ids, mask, positions = left_padded([prompts[i] for i in idx], tokenizer.pad_token_id)
        prefill = model(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            position_ids=positions.to(model.device),
            use_cache=True,
            logits_to_keep=1,
        )
        for i, row in zip(
            idx, _score_names(model, tokenizer, prefill.past_key_values, mask, [candidates[i] for i in idx])
        ):
            scores[i] = row
    return scores


def _score_names(
    model, tokenizer, cache, mask: torch.Tensor, candidates: list[list[str]]
) -> list[list[tuple[float, int]]]:
    """Score ``ANSWER_PREFIX + " <name>"`` after each cached, left-padded prompt; only the name's tokens count.

    One candidate slot of every row at a time; the cache is cropped back to
    the prompts after each slot.
    """
    prefix = tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
    names = [[tokenizer(" " + name, add_special_tokens=False)["input_ids"] for name in row] for row in candidates]
    mask, pad = mask.cpu(), tokenizer.pad_token_id
    lengths = mask.sum(1)
    scores: list[list[tuple[float, int]]] = [[] for _ in names]
    for slot in range(max(len(row) for row in names)):
        rows = [prefix + (row[slot] if slot < len(row) else []) for row in names]
        cont, cont_mask = _right_padded(rows, pad)
        span = cont.shape[1]
        out = model(
            input_ids=cont.to(model.device),
            attention_mask=torch.cat([mask, cont_mask], 1).to(model.device),
            position_ids=(lengths[:, None] + torch.arange(span)).to(model.device),
            past_key_values=cache,
            use_cache=True,
        )
        cache.crop(-span)
        # the logits at position j predict token j + 1; the prefix tokens are context, not scored
        logprobs = torch.log_softmax(out.logits[:, len(prefix) - 1 : -1].float(), -1).cpu()
        targets = cont[:, len(prefix) :]
        token_lp = logprobs.gather(-1, targets[..., None])[..., 0] * cont_mask[:, len(prefix) :]
        for r, row in enumerate(names):
            if slot < len(row):
                scores[r].append((float(token_lp[r].sum()), len(row[slot])))
    return scores


def candidate_confidences(loglikelihoods: list[tuple[float, int]]) -> np.ndarray:
    """Softmax over the candidates of their per-token mean log-likelihoods."""
    return softmax(np.array([total / count for total, count in loglikelihoods]))


def _right_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of token ``rows`` right-padded: pads only follow the real tokens."""
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, tokens in enumerate(rows):
        ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[r, : len(tokens)] = 1
    return ids, mask


@torch.inference_mode()
def shared_prompt_loglikelihoods(
    model, tokenizer, messages: list[dict], continuations: list[str]
) -> list[tuple[float, int]]:
    """Summed float32 log-likelihood (and token count) of each continuation as the assistant's answer to
    ``messages``.

    The prompt runs once; its key/value cache is repeated over the continuations, which then run as one
    right-padded batch: K candidates cost one prompt pass and one short pass, not K generations. The
    continuations are tokenised on their own: the chat template's generation prompt ends in a newline,
    where the byte-level BPE starts a new piece anyway, so the tokens are those of the whole conversation.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    targets = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    prefill = model(input_ids=torch.tensor([prompt], device=model.device), use_cache=True, logits_to_keep=1)
    cache = prefill.past_key_values
    cache.batch_repeat_interleave(len(targets))
    ids, mask = _right_padded(targets, tokenizer.pad_token_id)
    out = model(
        input_ids=ids.to(model.device),
        attention_mask=torch.cat([torch.ones(len(targets), len(prompt), dtype=torch.long), mask], 1).to(model.device),
        position_ids=(len(prompt) + torch.arange(ids.shape[1])).expand_as(ids).to(model.device),
        cache=cache,
        use_cache=False,
    )
    # the prompt's last logits predict every continuation's first token; position j of the batch predicts j + 1
    logits = torch.cat([prefill.logits.expand(len(targets), -1, -1), out.logits[:, :-1]], 1)
    token_lp = torch.log_softmax(logits.float(), -1).cpu().gather(-1, ids[..., None])[..., 0] * mask
    return [(float(token_lp[r].sum()), len(t)) for r, t in enumerate(targets)]
