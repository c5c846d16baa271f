"""The counting every curation step shares: a step gives a verdict per record (:class:`Keep` or :class:`Drop`),
or, where it samples, its counts per source, and a :class:`Tally` turns them into in/out/dropped per source."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

MAX_EXAMPLES = 5  # dropped records kept as examples, per step and reason
_EMPTY: Mapping[str, int] = MappingProxyType({})


class Keep(NamedTuple):
    """A step keeps a record: ``item`` goes on (the record, possibly changed), ``counts`` are step-specific
    counts for the record's source (``Tally.counts[name][source] += n``)."""

    item: Any
    counts: Mapping[str, int] = _EMPTY


class Drop(NamedTuple):
    """A step drops a record, for ``reason``; ``example`` holds the example's fields, or is a function giving
    them when they are costly to work out (called only while examples of the reason are still wanted)."""

    reason: str
    example: Mapping | Callable[[], Mapping] = _EMPTY


@dataclass
class Tally:
    """One step's counts per source: records in (``seen``), out (``kept``), dropped by reason,
    step-specific counts (``counts[name][source]``) and a few examples of what was dropped."""

    seen: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: list[dict] = field(default_factory=list)

    def count(self, verdicts: Iterable[tuple[dict, Keep | Drop]]) -> Iterator:
        """The items a step keeps, each record of ``verdicts`` (record in, the step's verdict on it) counted."""
        for record, verdict in verdicts:
            source = record["source"]
            self.seen[source] += 1
            if isinstance(verdict, Drop):
                self._drop(record, verdict)
                continue
            for name, n in verdict.counts.items():
                self.counts[name][source] += n
            self.kept[source] += 1
            yield verdict.item

    def count_sample(
        self, seen: Mapping[str, int], kept: Mapping[str, int], reason: str, dropped: Mapping[str, int]
    ) -> None:
        """The counts of a step that keeps a sample of each source: records in and out per source, and how many
        of each sampled source it dropped for ``reason`` (a sampled source that lost none shows 0)."""
        self.seen.update(seen)
        self.kept.update(kept)
        if dropped:
            self.dropped[reason].update(dropped)

    def wants_example(self, reason: str) -> bool:
        """Whether fewer than ``MAX_EXAMPLES`` examples of ``reason`` are kept yet."""
        return sum(e["reason"] == reason for e in self.examples) < MAX_EXAMPLES

    def _drop(self, record: dict, drop: Drop) -> None:
        self.dropped[drop.reason][record["source"]] += 1
        if self.wants_example(drop.reason):
            example = drop.example() if callable(drop.example) else drop.example
            self.examples.append({"id": record["id"], "source": record["source"], "reason": drop.reason, **example})

    def as_dict(self) -> dict:
        return {
            "in": dict(self.seen),
            "out": dict(self.kept),
            "in_total": sum(self.seen.values()),
            "out_total": sum(self.kept.values()),
            "dropped": {reason: dict(c) for reason, c in self.dropped.items()},
            "counts": {name: dict(c) for name, c in self.counts.items()},
            "examples": self.examples,
        }


def counted(verdicts: Iterable[tuple[dict, Keep | Drop]], tally: Tally | None) -> Iterator:
    """:meth:`Tally.count` into ``tally``, or into a throwaway one when None (a step run on its own)."""
    return (tally if tally is not None else Tally()).count(verdicts)
