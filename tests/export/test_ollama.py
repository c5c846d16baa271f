"""Ollama model names and the on-disk layout."""

from __future__ import annotations

import pytest

from medllm.errors import MedllmError
from medllm.export.ollama import parse_model_name, read_layout


def test_model_name_validation(tmp_path):
    assert parse_model_name("alice/medllm-dx") == ("alice", "medllm-dx", "latest")
    assert parse_model_name("alice/smollm2_1.0:q8-0") == ("alice", "smollm2_1.0", "q8-0")
    for bad in ("medllm", "Alice/medllm", "alice/medllm:Latest", "alice/-x", "a/b/c", "alice/med llm", ""):
        with pytest.raises(MedllmError, match="namespace/model"):
            parse_model_name(bad)
    with pytest.raises(MedllmError, match="no Ollama model alice/x"):
        read_layout(tmp_path, "alice/x")
