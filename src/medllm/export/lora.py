"""The LoRA adapter as a GGUF LoRA (llama.cpp's ``--lora``, Ollama's ``ADAPTER``) beside a GGUF of the base model.

Written as llama.cpp's ``convert_lora_to_gguf.py`` writes one: ``general.type`` ``adapter``, ``adapter.type``
``lora``, ``adapter.lora.alpha``, and for each adapted linear layer ``<gguf name>.lora_a`` (PEFT's A, r × in)
and ``.lora_b`` (B, out × r; q and k rows permuted like the base weights) in float32. llama.cpp scales the
product by alpha / r, r read from B, so an rsLoRA adapter (PEFT scales it by alpha / √r) is written with
alpha √r. Checked in llama.cpp: the base GGUF with the adapter applied must give the logits of the base model
with its adapter unmerged (PEFT, float32) within the base file type's llama.cpp tolerance.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.export.gguf import LLAMACPP_TOLERANCE, agreement, llamacpp_outputs, permute, require_within, write_gguf
from medllm.models import load_model

_PEFT_NAME = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")


def lora_tensors(adapter: Path, hf_config):
    """(GGUF name, float32 array) of every A and B of ``adapter`` (a PEFT LoRA folder), and the alpha to record."""
    settings = json.loads((adapter / "adapter_config.json").read_text())
    if settings.get("use_dora") or settings.get("rank_pattern") or settings.get("alpha_pattern"):
        raise MedllmError(f"{adapter}: DoRA and per-module ranks or alphas have no GGUF LoRA form; merge instead")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hf_config.num_hidden_layers)
    tensors = []
    for peft_name, tensor in sorted(load_file(adapter / "adapter_model.safetensors").items()):
        match = _PEFT_NAME.match(peft_name)
        name = names.get_name(f"{match['module']}.weight", try_suffixes=(".weight",)) if match else None
        if name is None or not match["module"].endswith("_proj"):
            raise MedllmError(f"{adapter}: no GGUF LoRA form for {peft_name} (only the linear layers are supported)")
        data = tensor.to(torch.float32).numpy()
        if match["half"] == "B" and match["module"].endswith(("q_proj", "k_proj")):
            query = match["module"].endswith("q_proj")
            data = permute(data, hf_config.num_attention_heads if query else hf_config.num_key_value_heads)
        tensors.append((f"{name}.lora_{match['half'].lower()}", np.ascontiguousarray(data)))
    alpha = float(settings["lora_alpha"]) * (math.sqrt(settings["r"]) if settings.get("use_rslora") else 1.0)
    return tensors, alpha


def write_lora_gguf(adapter: Path, hf_config, path: Path, metadata: gguf.Metadata) -> None:
    """``adapter`` as one GGUF LoRA file at ``path``."""
    tensors, alpha = lora_tensors(adapter, hf_config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    metadata.set_gguf_meta_model(writer)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, data in tensors:
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_lora_pair(config: Config, adapter: Path, hf_config, tokenizer, folder: Path, name: str, metadata) -> dict:
    """The base model as a GGUF of the first ``export.gguf_types`` and ``adapter`` as a GGUF LoRA in ``folder``
    (its ``merged/`` holds the tokenizer files); their file names and sizes."""
    type_name = config.export.gguf_types[0]
    base_file, lora_file = folder / f"{name}-BASE-{type_name.upper()}.gguf", folder / f"{name}-LORA-F32.gguf"
    base = load_model(config.model.model_copy(update={"dtype": "float32"}))
    write_gguf(base, tokenizer, folder / "merged", base_file, type_name, dataclasses.replace(metadata, finetune=None))
    del base
    write_lora_gguf(adapter, hf_config, lora_file, metadata)
    return {
        "base": {"file": base_file.name, "type": type_name, "size": base_file.stat().st_size},
        "adapter": {"file": lora_file.name, "size": lora_file.stat().st_size},
        "tolerance_relative": LLAMACPP_TOLERANCE[type_name],
    }


def verify_lora_in_llamacpp(base: Path, lora: Path, type_name: str, reference: dict) -> dict | None:
    """The base GGUF with the GGUF LoRA applied in llama.cpp, against the base with its adapter unmerged; None
    when llama-cpp-python (the ``llamacpp`` extra) is not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    _, logits, greedy = llamacpp_outputs(base, reference, lora)
    check = agreement(logits, greedy, reference)
    require_within(f"{base.name} with {lora.name} in llama.cpp", check, LLAMACPP_TOLERANCE[type_name], type_name)
    return check
