"""Stages `medllm export` and `medllm push`: merge, GGUF, Modelfile, Ollama model store, registry push."""
