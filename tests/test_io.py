import json

import pytest

from medllm.errors import MedllmError
from medllm.io import atomic_directory, atomic_path, atomic_write_json, read_jsonl


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"top1": 0.5})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half a fil")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"top1": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_directory_build_keeps_the_old_directory(tmp_path):
    final = tmp_path / "index"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("interrupted")
    assert (final / "a.txt").read_text() == "first"
    with atomic_directory(final) as tmp:
        (tmp / "b.txt").write_text("third")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(MedllmError, match=rf"{path}:3: invalid JSON"):
        next(rows)
    path.write_text("[1, 2]\n")
    with pytest.raises(MedllmError, match=rf"{path}:1: expected a JSON object"):
        list(read_jsonl(path))
