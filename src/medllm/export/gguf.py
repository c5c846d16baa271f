"""GGUF files of the merged model in llama.cpp's Llama layout, and their check against what was trained.

Each requested type is written with the ``gguf`` package as llama.cpp's
converter writes it (tensor names, q/k row order, vocabulary, special ids,
chat template) from the float32 merged weights. The check loads ``merged/``
and each file back with transformers: a file's tokenizer must give the
model's token ids, and the logits must match those of the base model with
its adapter unmerged (PEFT, float32) within the type's tolerance; top-1
agreement and greedy continuations are measured beside them. With the
``llamacpp`` extra installed each file is also run in llama.cpp itself, the
runtime Ollama uses, and checked the same way.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import partial
from pathlib import Path

import gguf
import numpy as np
import torch

from medllm.errors import MedllmError
from medllm.prompts import build_messages

log = logging.getLogger(__name__)

# GGUF type: tensor type of the 2-D weights, and the file type llama.cpp records for it.
GGUF_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
# Largest accepted max |logit(GGUF) - logit(base + unmerged adapter)| over the check prompts, relative to
# the reference's largest |logit|: 2-3x the worst difference measured for each type (SmolLM2-135M with and
# without a trained adapter, and a tiny random Llama). f32 also bounds merged/ (float32 safetensors).
TOLERANCE = {"f32": 1e-5, "f16": 2e-2, "q8_0": 0.1}
# The same for each file run in llama.cpp, which also rounds activations: its key/value cache is f16 by
# default, and q8_0 matrix products take 8-bit inputs. 3-4x the worst measured (SmolLM2-135M with and
# without an adapter: f16 1.0e-2, q8_0 8.8e-2; the base alone, `medllm export --base-model`: 8.4e-3 and
# 5.5e-2; the tiny Llamas of the tests: f32 1.6e-4).
LLAMACPP_TOLERANCE = {"f32": 5e-4, "f16": 3e-2, "q8_0": 0.25}
# The same against the merged model with its weights rounded as the type stores them, which is what
# a faithful file computes: float error only.
CONVERSION_TOLERANCE = 1e-5
# Greedy tokens generated after each check prompt, compared with the reference's.
GREEDY_TOKENS = 16
VERIFY_VIGNETTE = (
    "34-year-old woman; fever 39.2 °C for 3 days, migratory joint pain, rash on the trunk, "
    "HbA1c 5.4 %; résumé of a naïve café worker."
)
VERIFY_CANDIDATES = ["Rheumatic fever", "Lyme disease", "Systemic lupus erythematosus"]


def check_types(types: list[str], hf_config) -> None:
    """Every requested type must be known and fit the weight rows (quantized blocks)."""
    unknown = [t for t in types if t not in GGUF_TYPES]
    if unknown or not types:
        raise MedllmError(f"GGUF types {types}: unknown {unknown}; choose from {sorted(GGUF_TYPES)}")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    rows = {hf_config.hidden_size, hf_config.intermediate_size, hf_config.num_attention_heads * head_dim}
    for name in types:
        block = gguf.GGML_QUANT_SIZES[GGUF_TYPES[name][0]][0]
        if bad := sorted(r for r in rows if r % block):
            raise MedllmError(
                f"GGUF type {name} packs rows in blocks of {block}, but this model has rows of "
                f"length {bad}; choose f16 or f32"
            )


def check_architecture(hf_config) -> None:
    """Only plain Llama weights map onto llama.cpp's ``llama`` architecture as written here."""
    if hf_config.model_type != "llama":
        raise MedllmError(f"GGUF export supports Llama models, not {hf_config.model_type!r}")
    rope = getattr(hf_config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise MedllmError(f"GGUF export does not handle rope scaling {rope['rope_type']!r}")


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows per head from Hugging Face's rotary layout to ggml's (llama.cpp ``LlamaModel.permute``)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_tensors(model, type_name: str):
    """(GGUF name, array, tensor type) for each weight; 1-D tensors (norms) stay float32 as in llama.cpp."""
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    qtype = GGUF_TYPES[type_name][0]
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # ggml reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MedllmError(f"no GGUF name for tensor {hf_name}")
        data = tensor.detach().to(torch.float32).numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, cfg.num_attention_heads)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, cfg.num_key_value_heads)
        ttype = gguf.GGMLQuantizationType.F32 if data.ndim == 1 else qtype
        yield name, gguf.quants.quantize(data, ttype), ttype


def bpe_pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's name (``tokenizer.ggml.pre``) for the byte-level pre-tokenizer of ``tokenizer.json``."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    kinds = [(s.get("type"), s.get("individual_digits", s.get("use_regex"))) for s in steps]
    if kinds == [("ByteLevel", True)]:
        return "gpt-2"
    if kinds == [("Digits", True), ("ByteLevel", True)]:
        return "smollm"
    raise MedllmError(f"unknown byte-level pre-tokenizer {pre}: no llama.cpp name for it")


def add_vocab(writer: gguf.GGUFWriter, folder: Path, tokenizer, n_vocab: int) -> None:
    """Tokens, types, scores or merges, special ids and the chat template, as llama.cpp's converter writes them."""
    sentencepiece = (folder / "tokenizer.model").is_file()
    try:
        vocab = gguf.SentencePieceVocab(folder) if sentencepiece else gguf.BpeVocab(folder)
    except FileNotFoundError as exc:
        raise MedllmError(
            f"{folder}: neither a SentencePiece tokenizer.model nor a byte-level BPE tokenizer.json ({exc})"
        ) from None
    tokens, scores, types = (list(column) for column in zip(*vocab.all_tokens()))
    if len(tokens) > n_vocab:
        raise MedllmError(f"the tokenizer has {len(tokens)} tokens but the model only {n_vocab} embeddings")
    # Special added tokens are control tokens: matched whole, never split (BpeVocab types them all normal).
    for token_id, added in tokenizer.added_tokens_decoder.items():
        if token_id < len(types):
            types[token_id] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
    for token_id in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{token_id}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    if sentencepiece:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_scores(scores)
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(bpe_pre_tokenizer(json.loads((folder / "tokenizer.json").read_text())))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=not sentencepiece, n_vocab=n_vocab)
    # Whether encoding adds BOS/EOS is what the tokenizer does, whatever its config files say.
    ids = tokenizer("a")["input_ids"]
    special.add_special_token["bos"] = tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    special.add_special_token["eos"] = tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id
    special.add_to_gguf(writer, quiet=True)


def write_gguf(model, tokenizer, folder: Path, path: Path, type_name: str, metadata: gguf.Metadata) -> None:
    """One GGUF file of the merged model in ``folder`` (its tokenizer files are read from there)."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    for name, data, ttype in gguf_tensors(model, type_name):
        writer.add_tensor(name, data, raw_dtype=ttype)
    metadata.set_gguf_meta_model(writer)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(GGUF_TYPES[type_name][1])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, folder, tokenizer, cfg.vocab_size)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_all(model, tokenizer, folder: Path, merged: Path, model_name: str, types: list[str], metadata) -> dict:
    """One GGUF file per type in ``folder``; return each one's file name, size and tolerance, by type."""
    entries = {}
    for type_name in types:
        path = folder / f"{model_name}-{type_name.upper()}.gguf"
        log.info("writing %s", path.name)
        write_gguf(model, tokenizer, merged, path, type_name, metadata)
        entries[type_name] = {
            "file": path.name,
            "size": path.stat().st_size,
            "tolerance_relative": TOLERANCE[type_name],
        }
    return entries


def verify_texts(tokenizer) -> list[str]:
    """A chat prompt as trained (special tokens, template), plus digits, units and accents."""
    chat = tokenizer.apply_chat_template(
        build_messages(VERIFY_VIGNETTE, VERIFY_CANDIDATES), tokenize=False, add_generation_prompt=True
    )
    return [
        chat,
        "Fever 39.2 °C, SpO2 91 % — résumé naïve café; HbA1c 7.5 %",
        "1. Lyme disease\n2. Rheumatoid arthritis\nRationale: tick bite, erythema migrans.",
    ]


@torch.inference_mode()
def _logits(model, ids: list[list[int]]) -> list[torch.Tensor]:
    return [model(torch.tensor([row])).logits[0].float() for row in ids]


@torch.inference_mode()
def _greedy(model, ids: list[list[int]], tokenizer) -> list[list[int]]:
    """The first ``GREEDY_TOKENS`` tokens greedy decoding gives after each prompt (fewer if it ends)."""
    return [
        model.generate(
            input_ids=torch.tensor([row]),
            attention_mask=torch.ones(1, len(row), dtype=torch.long),
            max_new_tokens=GREEDY_TOKENS,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )[0, len(row) :].tolist()
        for row in ids
    ]


def reference_outputs(model, tokenizer) -> dict:
    """The check prompts' token ids, logits and greedy continuations by the model the export must reproduce.

    ``model`` is the base with its adapter unmerged, in float32: what was trained, so a wrong merge shows
    up in the check instead of becoming its reference.
    """
    texts = verify_texts(tokenizer)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    return {"texts": texts, "ids": ids, "logits": _logits(model, ids), "greedy": _greedy(model, ids, tokenizer)}


def agreement(logits: list[torch.Tensor], greedy: list[list[int]], reference: dict) -> dict:
    """Logits, top-1 tokens and greedy continuations on the reference's prompts, against the reference's."""
    expected = reference["logits"]
    scale = max(r.abs().max().item() for r in expected)
    check = {
        "max_abs_logit_diff": _max_diff(logits, expected),
        "max_abs_logit": scale,
        "top1_agreement": sum((a.argmax(-1) == b.argmax(-1)).sum().item() for a, b in zip(logits, expected))
        / sum(len(row) for row in reference["ids"]),
        "greedy_equal": sum(a == b for a, b in zip(greedy, reference["greedy"])) / len(greedy),
    }
    check["relative"] = check["max_abs_logit_diff"] / scale
    return check


def compare(model, tokenizer, reference: dict) -> tuple[dict, list[torch.Tensor]]:
    """``model``'s :func:`agreement` with the reference, and its logits."""
    logits = _logits(model, reference["ids"])
    return agreement(logits, _greedy(model, reference["ids"], tokenizer), reference), logits


def rounded_like(model, type_name: str):
    """``model`` with its 2-D weights rounded the way ``type_name`` stores them: what a faithful GGUF computes."""
    qtype = GGUF_TYPES[type_name][0]
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                stored = gguf.quants.dequantize(gguf.quants.quantize(param.detach().numpy(), qtype), qtype)
                param.copy_(torch.from_numpy(stored))
    return model


def _max_diff(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(first, second))


def verify_gguf(path: Path, type_name: str, reference: dict, rounded: list[torch.Tensor]) -> dict:
    """Load the GGUF back with transformers; its tokenizer must give the same ids.

    Its logits are compared twice: with the merged model's weights rounded as the type stores them (the
    conversion itself: equal up to float error), and with the base model plus its unmerged adapter (what
    the merge and the type lose together, within the type's tolerance).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts, ids = reference["texts"], reference["ids"]
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    gguf_ids = [tokenizer(t)["input_ids"] for t in texts]
    if gguf_ids != ids:
        bad = next(i for i, (a, b) in enumerate(zip(gguf_ids, ids)) if a != b)
        raise MedllmError(
            f"{path.name}: its tokenizer encodes {texts[bad][:60]!r} as {gguf_ids[bad][:12]}..., "
            f"the model's as {ids[bad][:12]}..."
        )
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    check, logits = compare(model, tokenizer, reference)
    check = {"tokens_equal": True, **check, "conversion_max_abs_diff": _max_diff(logits, rounded)}
    if check["conversion_max_abs_diff"] > CONVERSION_TOLERANCE * check["max_abs_logit"]:
        raise MedllmError(
            f"{path.name}: logits differ by {check['conversion_max_abs_diff']:.3g} from the merged "
            f"model with its weights rounded to {type_name}: the conversion is wrong"
        )
    require_within(path.name, check, TOLERANCE[type_name], type_name)
    return check


def llamacpp_outputs(path: Path, reference: dict, lora: Path | None = None):
    """llama.cpp's own token ids of the check texts, and its logits and greedy tokens on the reference's ids
    (with the GGUF LoRA ``lora`` applied)."""
    from medllm.llamacpp import greedy_tokens, open_gguf, position_logits

    ids = reference["ids"]
    llm = open_gguf(path, n_ctx=max(map(len, ids)) + GREEDY_TOKENS, lora=lora)
    try:
        runtime_ids = [llm.tokenize(t.encode(), add_bos=True, special=True) for t in reference["texts"]]
        logits = [torch.from_numpy(position_logits(llm, row)) for row in ids]
        greedy = [greedy_tokens(llm, row, GREEDY_TOKENS) for row in ids]
    finally:
        llm.close()
    return runtime_ids, logits, greedy


def verify_in_llamacpp(path: Path, type_name: str, reference: dict) -> dict | None:
    """The GGUF in llama.cpp itself, the runtime Ollama and ``--backend llamacpp`` run it in; None when
    llama-cpp-python (the ``llamacpp`` extra) is not installed.

    Its logits on the model's token ids must be within the type's llama.cpp tolerance of the base model with
    its unmerged adapter. Its own tokenisation is compared and recorded, not enforced: llama.cpp writes a
    space after every special token of a SentencePiece vocabulary, as ``legacy`` Hugging Face tokenizers do,
    and a ``legacy=False`` one does not, which no GGUF field can express.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    texts, ids = reference["texts"], reference["ids"]
    runtime_ids, logits, greedy = llamacpp_outputs(path, reference)
    check = {"tokens_equal": runtime_ids == ids, **agreement(logits, greedy, reference)}
    if not check["tokens_equal"]:
        bad = next(i for i, (a, b) in enumerate(zip(runtime_ids, ids)) if a != b)
        check["token_difference"] = (
            f"{texts[bad][:40]!r}: llama.cpp {runtime_ids[bad][:10]}..., the model's tokenizer {ids[bad][:10]}..."
        )
        log.warning("%s in llama.cpp tokenises differently from training: %s", path.name, check["token_difference"])
    require_within(f"{path.name} in llama.cpp", check, LLAMACPP_TOLERANCE[type_name], type_name)
    return check


def require_within(name: str, check: dict, tolerance: float, type_name: str) -> None:
    if check["relative"] > tolerance:
        raise MedllmError(
            f"{name}: logits differ from the base model with its unmerged adapter by "
            f"{check['max_abs_logit_diff']:.3g} ({check['relative']:.3g} of the largest logit), over the "
            f"{type_name} tolerance {tolerance}"
        )


def verify_all(folder: Path, tokenizer, merged: dict, entries: dict, reference: dict) -> int:
    """Check ``merged/`` (the ``merged`` entry) and every GGUF in ``entries`` against ``reference``.

    Each entry gets its ``check``; returns the number of prompts used.
    """
    from transformers import AutoModelForCausalLM

    load = partial(AutoModelForCausalLM.from_pretrained, folder / merged["folder"], dtype=torch.float32)
    merged["check"], merged_logits = compare(load(), tokenizer, reference)
    require_within(f"{merged['folder']}/", merged["check"], merged["tolerance_relative"], merged["dtype"])
    for type_name, entry in entries.items():
        rounded = merged_logits if type_name == "f32" else _logits(rounded_like(load(), type_name), reference["ids"])
        entry["check"] = verify_gguf(folder / entry["file"], type_name, reference, rounded)
        entry["check"]["llamacpp"] = verify_in_llamacpp(folder / entry["file"], type_name, reference)
        log.info(
            "%s: max abs logit difference %.3g (%.3g of the largest logit) from the base model with its "
            "unmerged adapter, %.3g from the merged weights rounded in transformers",
            entry["file"],
            entry["check"]["max_abs_logit_diff"],
            entry["check"]["relative"],
            entry["check"]["conversion_max_abs_diff"],
        )
    return len(reference["ids"])
