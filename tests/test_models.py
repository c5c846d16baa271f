import json

import pytest
import torch

from medllm.config import ModelConfig
from medllm.errors import MedllmError
from medllm.models import MANIFEST, _cache_is_valid, resolve_dtype, resolve_model_path


def _fake_cache(folder):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    (folder / "config.json").write_text("{}")
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / MANIFEST).write_text(json.dumps({"files": files}))


def test_cache_is_used_only_when_complete(tmp_path):
    cache = tmp_path / "smollm2-135m-instruct"
    _fake_cache(cache)
    assert _cache_is_valid(cache)
    (cache / "model.safetensors").write_bytes(b"x" * 10)  # truncated by a crash
    assert not _cache_is_valid(cache)
    (cache / MANIFEST).unlink()  # conversion never finished
    assert not _cache_is_valid(cache)


def test_local_folder_and_hub_id_resolve(tmp_path, tiny_llama_dir):
    assert resolve_model_path(ModelConfig(name=str(tiny_llama_dir))) == str(tiny_llama_dir)
    assert resolve_model_path(ModelConfig(name="meta-llama/Llama-2-7b-chat-hf")) == "meta-llama/Llama-2-7b-chat-hf"
    with pytest.raises(MedllmError, match=r"no config.json"):
        resolve_model_path(ModelConfig(name=str(tmp_path)))
    with pytest.raises(MedllmError, match="neither a local folder"):
        resolve_model_path(ModelConfig(name="not a model"))


def test_dtype_auto_picks_a_native_type():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("auto") in (torch.float32, torch.bfloat16, torch.float16)
