"""Stages `medllm serve` and `medllm ui`: the decision-support API and the clinician page."""
