"""Step 5, group split: each record to train, validation or test by a hash of its group (patient, note,
article), so no group is in two splits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping

from medllm.config import check_fractions
from medllm.data.curate.tally import Keep, Tally, counted
from medllm.errors import MedllmError


def split_of(group: str, fractions: Mapping[str, float], seed: str | int = "medllm") -> str:
    """The split of ``group``: sha1 of ``seed:group`` read as a number in [0, 1) against the cumulative
    ``fractions`` (in the order given). Stable across runs, machines and record order; every record of a
    group lands in the same split."""
    u = int.from_bytes(hashlib.sha1(f"{seed}:{group}".encode()).digest()[:8], "big") / 2**64
    total, last = 0.0, None
    for name, fraction in fractions.items():
        if fraction > 0:
            total, last = total + fraction, name
            if u < total:
                return name
    return last  # rounding: u beyond a sum just under 1


def group_split(
    records: Iterable[dict], fractions: Mapping[str, float], seed: str | int = "medllm", tally: Tally | None = None
) -> Iterator[tuple[str, dict]]:
    """(split, record) per record by :func:`split_of` its ``group``; ``tally.counts[split][source]``.

    A record that carries a ``split`` keeps it: the simulated cases of
    :mod:`medllm.data.build` are split by simulation seed, every disease in every split.
    """
    try:
        check_fractions(fractions)
    except ValueError as exc:
        raise MedllmError(f"curate: {exc}") from None

    def verdict(record: dict) -> Keep:
        split = record.get("split") or split_of(record["group"], fractions, seed)
        return Keep((split, record), {split: 1})

    yield from counted(((record, verdict(record)) for record in records), tally)
