"""The adapter as a GGUF LoRA beside a base GGUF: llama.cpp's layout, and the pair checked in llama.cpp."""

from __future__ import annotations

import json
import math

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medllm.errors import MedllmError
from medllm.export.gguf import LLAMACPP_TOLERANCE, permute, reference_outputs, verify_in_llamacpp
from medllm.export.lora import lora_tensors, verify_lora_in_llamacpp


def test_the_export_writes_a_base_gguf_and_the_adapter_as_a_gguf_lora(tiny_export, tiny_llama_dir):
    config, summary, out = tiny_export
    lora = summary["lora"]
    assert lora["base"] == {"file": "tiny-dx-BASE-F16.gguf", "type": "f16", "size": lora["base"]["size"]}
    reader = gguf.GGUFReader(out / lora["adapter"]["file"])
    fields = {name: reader.fields[name].contents() for name in ("general.type", "adapter.type", "adapter.lora.alpha")}
    assert fields == {"general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 8.0}
    tensors = {t.name: t for t in reader.tensors}
    peft = load_file(config.output_dir / "adapter" / "adapter_model.safetensors")
    assert len(tensors) == len(peft) and all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    # B of q is permuted like the base q weights; A and the other Bs are PEFT's as they are
    key = "base_model.model.model.layers.0.self_attn.{}.lora_{}.weight"
    heads = json.loads((tiny_llama_dir / "config.json").read_text())["num_attention_heads"]
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_a"].data, peft[key.format("q_proj", "A")].numpy())
    q_b = permute(peft[key.format("q_proj", "B")].numpy(), heads)
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_b"].data, q_b)
    down = peft["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].numpy()
    np.testing.assert_array_equal(tensors["blk.0.ffn_down.weight.lora_b"].data, down)
    modelfile = (out / "Modelfile.lora").read_text()
    assert modelfile.startswith("FROM ./tiny-dx-BASE-F16.gguf\nADAPTER ./tiny-dx-LORA-F32.gguf\nTEMPLATE ")
    card = (out / "README.md").read_text()
    assert "| `tiny-dx-BASE-F16.gguf` + `tiny-dx-LORA-F32.gguf` (GGUF LoRA) in llama.cpp |" in card


def test_the_base_gguf_with_the_lora_is_the_trained_model_in_llama_cpp(tiny_export, tiny_llama_dir):
    """Within the f16 tolerance of base + unmerged adapter; the base file alone is not."""
    pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    from medllm.models import load_model

    config, summary, out = tiny_export
    check = summary["lora"]["check"]
    assert check["relative"] <= LLAMACPP_TOLERANCE["f16"] and check["top1_agreement"] > 0.9
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = load_model(config.model.model_copy(update={"dtype": "float32"}), config.output_dir / "adapter")
    reference = reference_outputs(model, tokenizer)
    base, adapter = out / "tiny-dx-BASE-F16.gguf", out / "tiny-dx-LORA-F32.gguf"
    assert verify_lora_in_llamacpp(base, adapter, "f16", reference)["relative"] <= LLAMACPP_TOLERANCE["f16"]
    with pytest.raises(MedllmError, match=r"tiny-dx-BASE-F16\.gguf in llama\.cpp: logits differ"):
        verify_in_llamacpp(base, "f16", reference)


def _adapter(folder, **settings):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, **settings}))
    from safetensors.torch import save_file

    save_file(
        {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.ones(4, 8)},
        folder / "adapter_model.safetensors",
    )
    return folder


def test_rslora_is_written_with_the_alpha_that_gives_its_scale_and_unsupported_adapters_are_named(tmp_path):
    from types import SimpleNamespace

    hf = SimpleNamespace(num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    tensors, alpha = lora_tensors(_adapter(tmp_path / "plain"), hf)
    assert [n for n, _ in tensors] == ["blk.0.ffn_up.weight.lora_a"] and alpha == 8.0
    _, alpha = lora_tensors(_adapter(tmp_path / "rs", use_rslora=True), hf)
    assert alpha / 4 == pytest.approx(8 / math.sqrt(4))  # llama.cpp's alpha / r is PEFT's rsLoRA alpha / sqrt(r)
    with pytest.raises(MedllmError, match="DoRA"):
        lora_tensors(_adapter(tmp_path / "dora", use_dora=True), hf)
