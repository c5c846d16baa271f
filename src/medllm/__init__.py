"""medllm: fine-tune a Llama-family model into a clinical decision-support assistant."""

__version__ = "0.1.0"
