"""Steps 6 and 8, the source mixture: ``cap`` bounds a source's records over all splits, ``weight`` sets its
share of the training split. Both keep a seeded uniform sample of each source, in stream order."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from medllm.data.curate.tally import Tally
from medllm.errors import MedllmError


def cap_sources(
    pairs: Iterable[tuple[str, dict]],
    caps: Mapping[str, int],
    fractions: Mapping[str, float],
    seed: int = 0,
    tally: Tally | None = None,
) -> dict[str, list[dict]]:
    """Collect (split, record) pairs into split lists, keeping at most ``caps[source]`` records of a source.

    A cap is shared out by ``fractions`` (a source capped at 1,000 keeps up to
    900/50/50 of train/validation/test) and filled by reservoir sampling, so
    the kept records are a uniform, seeded sample of the whole stream held in
    memory bounded by the cap, not the first records of the first file. Kept
    records stay in stream order. Uncapped sources keep everything.
    """
    out: dict[str, list] = {split: [] for split in fractions}
    reservoirs: dict[tuple[str, str], list] = {}
    arrived: Counter = Counter()  # records read per (split, capped source)
    seen: Counter = Counter()
    rngs: dict[tuple[str, str], random.Random] = {}
    for position, (split, record) in enumerate(pairs):
        source = record["source"]
        seen[source] += 1
        if source not in caps:
            out[split].append((position, record))
            continue
        key = (split, source)
        limit = round(caps[source] * fractions[split])
        bucket = reservoirs.setdefault(key, [])
        k = arrived[key]
        arrived[key] += 1
        if k < limit:
            bucket.append((position, record))
        else:
            rng = rngs.setdefault(key, random.Random(f"{seed}:cap:{split}:{source}"))
            j = rng.randrange(k + 1)
            if j < limit:
                bucket[j] = (position, record)
    dropped: Counter = Counter()
    for (split, source), bucket in reservoirs.items():
        out[split].extend(bucket)
        dropped[source] += arrived[(split, source)] - len(bucket)
    splits = {split: [record for _, record in sorted(items, key=lambda item: item[0])] for split, items in out.items()}
    if tally is not None:
        tally.count_sample(seen, Counter(r["source"] for rows in splits.values() for r in rows), "cap", dropped)
    return splits


def weight_sources(
    records: list[dict], weights: Mapping[str, float], seed: int = 0, tally: Tally | None = None
) -> list[dict]:
    """Downsample ``records`` so each source's share is its weight over the sum of weights.

    The mix is the largest one the records allow (the source shortest of its
    share sets the total); each source's records are a seeded uniform sample,
    kept in order. Weights never upsample: repeating records is what epochs
    are for. Every source present needs a weight when any has one.
    """
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_source[record["source"]].append(i)
    seen = {source: len(indices) for source, indices in by_source.items()}
    if not weights:
        if tally is not None:
            tally.count_sample(seen, seen, "weight", {})
        return list(records)
    missing = sorted(set(by_source) - set(weights))
    if missing:
        raise MedllmError(
            f"curate: mixture weights given for some sources but not for {', '.join(missing)}: "
            "give every training source a weight, or none"
        )
    total = sum(weights[s] for s in by_source)
    if total <= 0:
        raise MedllmError("curate: the mixture weights of the training sources sum to 0")
    shares = {s: weights[s] / total for s in by_source}
    size = min(len(by_source[s]) / p for s, p in shares.items() if p > 0)
    keep, kept = set(), {}
    for source, indices in by_source.items():
        kept[source] = min(len(indices), math.floor(shares[source] * size + 1e-9))
        keep.update(random.Random(f"{seed}:weight:{source}").sample(indices, kept[source]))
    if tally is not None:
        tally.count_sample(seen, kept, "weight", {s: seen[s] - n for s, n in kept.items()})
    return [r for i, r in enumerate(records) if i in keep]
