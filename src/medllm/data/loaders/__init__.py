"""Streaming loaders for the seed datasets users bring, all yielding the record schema of :mod:`medllm.data.sources`.

One module per kind of dataset (:mod:`~medllm.data.loaders.notes`,
:mod:`~medllm.data.loaders.cloze`, :mod:`~medllm.data.loaders.healthqa`,
:mod:`~medllm.data.loaders.chexpert`), on the shared readers of
:mod:`~medllm.data.loaders.reading`; :func:`iter_records` dispatches by source name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medllm.data.loaders.chexpert import iter_chexpert, iter_chexpert_plus
from medllm.data.loaders.cloze import iter_bioread, iter_clicr
from medllm.data.loaders.healthqa import iter_healthqa
from medllm.data.loaders.notes import iter_ehrdsqa, iter_pmc_patients
from medllm.data.loaders.reading import MAX_BAD_FRACTION
from medllm.data.sources import LoadStats
from medllm.errors import MedllmError

LOADERS = {
    "ehrdsqa": iter_ehrdsqa,
    "pmc_patients": iter_pmc_patients,
    "bioread": iter_bioread,
    "clicr": iter_clicr,
    "healthqa": iter_healthqa,
    "chexpert": iter_chexpert,
    "chexpert_plus": iter_chexpert_plus,
}


def iter_records(
    source: str, path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """The records of ``source`` read from ``path``, one at a time."""
    if source not in LOADERS:
        raise MedllmError(f"unknown source '{source}' (known: {', '.join(LOADERS)})")
    return LOADERS[source](path, stats, max_bad_fraction)
