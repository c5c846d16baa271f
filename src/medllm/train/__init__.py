"""Stage `medllm train`: the LoRA SFT recipe."""
