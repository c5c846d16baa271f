"""The API's routers, one per request shape: medllm's own, OpenAI's, Ollama's, and the health checks."""
