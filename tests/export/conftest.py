"""Fixtures of the export tests: the tiny model with a random adapter, exported once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import small_config
from medllm.export.recipe import export


def random_adapter(model_dir: Path, out: Path, std: float = 0.1, relative: float | None = None) -> Path:
    """A LoRA adapter with non-zero B weights, so merging changes the model.

    ``relative``: each B is rescaled so that its module's update has that RMS relative to the weight's,
    as small as a trained adapter's update.
    """
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer):
                b = module.lora_B["default"].weight
                torch.nn.init.normal_(b, std=std)
                if relative is not None:
                    rms = module.get_delta_weight("default").square().mean().sqrt()
                    b.mul_(relative * module.base_layer.weight.square().mean().sqrt() / rms)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def make_random_adapter():
    """:func:`random_adapter`, for tests that export their own model."""
    return random_adapter


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_llama_dir):
    """The tiny model + a random adapter exported once as f16 and q8_0 (with a training summary and eval).

    f32 is exported in the SentencePiece test: each GGUF check parses SmolLM2's 49k-token vocabulary.
    """
    tmp = tmp_path_factory.mktemp("export")
    config = small_config(
        tmp,
        str(tiny_llama_dir),
        **{
            "export.gguf_types": ["f16", "q8_0"],
            "export.license": "apache-2.0",
            "export.ollama_model": "medllm/tiny-dx:0.1",
        },
    )
    adapter = random_adapter(tiny_llama_dir, config.output_dir / "adapter", std=0.1)
    (config.output_dir / "train_summary.json").write_text(
        json.dumps(
            {
                "global_step": 4,
                "train_loss": 1.5,
                "train_runtime_s": 3.0,
                "eval_loss": 1.25,
                "eval_mean_token_accuracy": 0.5,
                "eval_n": 4,
                "train_n": 16,
            }
        )
    )
    block = {
        "n": 8,
        "answered": 1.0,
        "top1": {"accuracy": 0.25, "ci95": [0.07, 0.59]},
        "top5": {"accuracy": 0.5, "ci95": [0.22, 0.78]},
    }
    (config.output_dir / "eval").mkdir()
    (config.output_dir / "eval" / "metrics.json").write_text(
        json.dumps(
            {
                "protocol": "held-out test protocol",
                "n": 8,
                "split": "test",
                "conditions": {"retrieval": {"all": block}, "finetuned_rag": {"all": block}},
            }
        )
    )
    summary = export(config, adapter=adapter)
    return config, summary, config.output_dir / "export"
