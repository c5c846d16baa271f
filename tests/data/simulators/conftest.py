"""What every offline generator's records share: the record schema of :mod:`medllm.data.sources`."""

from __future__ import annotations

import pytest

from medllm.data.simulators import OFFLINE_SOURCES
from medllm.data.sources import SYSTEM_PROMPTS


@pytest.fixture
def check_shape():
    def check(record: dict) -> None:
        info = OFFLINE_SOURCES[record["source"]]
        assert set(record) == {"source", "id", "group", "task", "messages", "reference", "license", "meta"}
        assert record["id"].startswith(record["source"] + ":")
        assert record["task"] == info.task and record["license"] == info.license
        system, user = record["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPTS[info.task]}
        assert user["role"] == "user" and user["content"].strip()
        assert isinstance(record["reference"], str) and record["reference"].strip()
        assert isinstance(record["group"], str) and record["group"]
        assert isinstance(record["meta"], dict)

    return check
