"""Loader dispatch: every source's missing file names the files it expects."""

from __future__ import annotations

import pytest

from medllm.data.loaders import iter_records
from medllm.data.sources import SOURCES
from medllm.errors import MedllmError


@pytest.mark.parametrize("source", list(SOURCES))
def test_missing_file_names_the_expected_format(source, tmp_path):
    with pytest.raises(MedllmError, match="expected") as info:
        iter_records(source, tmp_path / "absent" / "data.json")
    assert str(tmp_path / "absent") in str(info.value) and SOURCES[source].files in str(info.value)
