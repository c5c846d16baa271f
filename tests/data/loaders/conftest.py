"""What the loader tests share: file writers, the load-and-count call, record checks, the HealthQA file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medllm.data.loaders import iter_records
from medllm.data.sources import SOURCES, SYSTEM_PROMPTS, LoadStats


@pytest.fixture
def write_csv():
    def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    return write_csv


@pytest.fixture
def load():
    def load(source: str, path: Path, **kwargs) -> tuple[list[dict], LoadStats]:
        stats = LoadStats()
        return list(iter_records(source, path, stats, **kwargs)), stats

    return load


@pytest.fixture
def user():
    def user(record: dict) -> str:
        return record["messages"][1]["content"]

    return user


@pytest.fixture
def check_shape():
    def check_shape(record: dict, source: str) -> None:
        info = SOURCES[source]
        assert record["source"] == source and record["id"].startswith(f"{source}:")
        assert record["task"] == info.task and record["license"] == info.license
        assert record["messages"][0] == {"role": "system", "content": SYSTEM_PROMPTS[info.task]}
        assert [m["role"] for m in record["messages"]] == ["system", "user"]

    return check_shape


@pytest.fixture
def healthqa_file(tmp_path) -> Path:
    rows = [
        ("1", "what are the symptoms of gout ?", "gout causes sudden severe pain and swelling in a joint ,"),
        ("0", "what are the symptoms of gout ?", "a bunion is a bony lump at the base of the big toe ,"),
        ("0", "what are the symptoms of gout ?", "plantar fasciitis causes heel pain ,"),
        ("0", "what are the symptoms of gout ?", "chilblains are itchy red patches ,"),
        ("1", "how is hay fever treated ?", "antihistamine tablets and steroid nasal sprays help , often , ,"),
        ("0", "how is hay fever treated ?", "asthma is a condition of the airways ,"),
        ("0", "how is hay fever treated ?", "sinusitis is swelling of the sinuses ,"),
    ]
    path = tmp_path / "pinfo-mz-test.txt"
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path
