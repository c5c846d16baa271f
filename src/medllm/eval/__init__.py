"""Stage `medllm eval`: held-out diagnosis, safety, multiple-choice and Q&A metrics, and the report."""
