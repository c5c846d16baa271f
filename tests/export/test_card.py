"""The model card of an export."""

from __future__ import annotations

from medllm.safety import DISCLAIMER


def test_model_card(tiny_export, tiny_llama_dir):
    _, _, out = tiny_export
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and f"base_model: {tiny_llama_dir}" in card
    for needle in (
        "Intended use",
        "faker-healthcare-provider",
        "MIT",
        "LoRA r=16",
        "4 optimizer steps",
        "held-out test protocol",
        "n = 8",
        "25.0% [7.0%, 59.0%]",
        "tiny-dx-Q8_0.gguf",
        "Limits",
        DISCLAIMER,
    ):
        assert needle in card
