"""GGUF files: the round trip against base + unmerged adapter, tensors and metadata, and the types accepted."""

from __future__ import annotations

import json

import gguf
import pytest
import torch

from medllm.errors import MedllmError
from medllm.export.gguf import (
    CONVERSION_TOLERANCE,
    LLAMACPP_TOLERANCE,
    TOLERANCE,
    check_types,
    reference_outputs,
    verify_in_llamacpp,
)


def test_gguf_round_trip_within_tolerance(tiny_export):
    _, summary, out = tiny_export
    assert set(summary["gguf"]) == {"f16", "q8_0"} and summary["verify_prompts"] == 3
    for type_name, entry in summary["gguf"].items():
        assert entry["file"] == f"tiny-dx-{type_name.upper()}.gguf" and (out / entry["file"]).is_file()
        check = entry["check"]
        assert check["tokens_equal"] and check["relative"] <= TOLERANCE[type_name]
        assert check["conversion_max_abs_diff"] <= CONVERSION_TOLERANCE * check["max_abs_logit"]
    assert summary["gguf"]["q8_0"]["check"]["top1_agreement"] > 0.9
    merged = summary["merged"]
    assert merged["check"]["relative"] <= merged["tolerance_relative"] == TOLERANCE["f32"]
    assert merged["check"]["top1_agreement"] == merged["check"]["greedy_equal"] == 1
    assert json.loads((out / "export.json").read_text()) == summary


def test_gguf_tensors_and_metadata(tiny_export, tiny_llama_dir):
    from transformers import AutoTokenizer

    _, _, out = tiny_export
    reader = gguf.GGUFReader(out / "tiny-dx-Q8_0.gguf")
    tensors = {t.name: t.tensor_type.name for t in reader.tensors}
    per_block = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
    assert set(tensors) == {
        "token_embd.weight",
        "output_norm.weight",
        *(f"blk.{i}.{t}.weight" for i in range(2) for t in per_block),
    }  # tied: no output.weight
    assert tensors["output_norm.weight"] == tensors["blk.1.ffn_norm.weight"] == "F32"
    assert tensors["token_embd.weight"] == tensors["blk.0.attn_q.weight"] == "Q8_0"
    kv = {
        name: field.contents()
        for name, field in reader.fields.items()
        if name not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    }
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert kv["general.architecture"] == "llama" and kv["general.name"] == "tiny-dx"
    assert kv["general.license"] == "apache-2.0" and kv["general.base_model.0.name"] == str(tiny_llama_dir)
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0 and kv["general.size_label"].endswith("M")
    assert (
        kv["llama.block_count"],
        kv["llama.context_length"],
        kv["llama.embedding_length"],
        kv["llama.feed_forward_length"],
        kv["llama.attention.head_count"],
        kv["llama.attention.head_count_kv"],
        kv["llama.vocab_size"],
        kv["llama.rope.dimension_count"],
    ) == (2, 1024, 32, 64, 4, 2, len(tokenizer), 8)
    assert kv["llama.rope.freq_base"] == pytest.approx(10000.0)
    assert kv["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2"
    assert kv["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert kv["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert kv["tokenizer.ggml.padding_token_id"] == tokenizer.pad_token_id
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.chat_template"] == tokenizer.chat_template
    tokens = reader.fields["tokenizer.ggml.tokens"]
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert len(tokens.data) == len(tokenizer) and len(reader.fields["tokenizer.ggml.merges"].data) > 40000
    assert types[tokenizer.convert_tokens_to_ids("<|im_start|>")] == gguf.TokenType.CONTROL
    assert types[tokenizer.convert_tokens_to_ids("Ġthe")] == gguf.TokenType.NORMAL


def test_bad_types():
    from transformers import LlamaConfig

    from medllm.config import load_config

    with pytest.raises(MedllmError, match=r"export.gguf_types"):
        load_config(None, {"export.gguf_types": "[q4_k]"})
    with pytest.raises(MedllmError, match=r"unknown \['q4_k'\]"):
        check_types(["q4_k"], LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4))
    odd = LlamaConfig(hidden_size=48, intermediate_size=100, num_attention_heads=4)
    check_types(["f32", "f16"], odd)
    with pytest.raises(MedllmError, match=r"q8_0 packs rows in blocks of 32.*\[48, 100\]"):
        check_types(["f16", "q8_0"], odd)


def test_each_gguf_runs_in_llama_cpp_within_its_tolerance(tiny_export):
    pytest.importorskip("llama_cpp")
    _, summary, out = tiny_export
    for type_name, entry in summary["gguf"].items():
        check = entry["check"]["llamacpp"]
        assert check["tokens_equal"] and check["relative"] <= LLAMACPP_TOLERANCE[type_name]
        assert check["top1_agreement"] > 0.9
    assert "| `tiny-dx-Q8_0.gguf` in llama.cpp |" in (out / "README.md").read_text()


def test_llama_cpp_check_fails_on_a_file_that_is_not_the_model_it_was_checked_against(tiny_export, tiny_llama_dir):
    """The exported file holds base + adapter; checked against the base alone, its logits are too far off."""
    pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, out = tiny_export
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    reference = reference_outputs(base, tokenizer)
    with pytest.raises(MedllmError, match=r"tiny-dx-F16\.gguf in llama\.cpp: logits differ .* over the f16 tolerance"):
        verify_in_llamacpp(out / "tiny-dx-F16.gguf", "f16", reference)
