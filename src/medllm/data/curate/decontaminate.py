"""Step 7 (training split only), decontaminate: training records sharing a word n-gram with an evaluation
text (a benchmark item, the test split) dropped; the evaluation texts are kept as n-gram hashes only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from medllm.data.curate.ngrams import line_ngram_hashes, ngram_hashes, sorted_unique, words
from medllm.data.curate.tally import Drop, Keep, Tally
from medllm.data.curate.text import prompt_text


@dataclass
class EvalIndex:
    """The word n-grams of evaluation texts as sorted 64-bit hashes (no text kept).

    ``units[i]``: how many evaluation units (a benchmark item, a test-split
    group) contain ``grams[i]``; ``sets[i]``: the index in ``names`` of the
    first evaluation set that has it. ``stats``: texts, units and texts shorter
    than ``n`` words (they have no n-gram) per set.
    """

    n: int
    grams: np.ndarray
    units: np.ndarray
    sets: np.ndarray
    names: list[str]
    stats: dict[str, dict[str, int]]
    common_ignored: int = 0
    _present: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def lookup(self, grams: np.ndarray) -> np.ndarray:
        """For each of ``grams``, its position in ``self.grams``, or -1 where the index does not hold it.

        A table of which leading bits occur in the index (16 slots a gram, at
        most 2**26: 64 MB) rules out most grams first, so the binary search into
        millions of grams (a large test split) runs for a few a record.
        """
        if not self.grams.size or not grams.size:
            return np.full(grams.shape, -1)
        if self._present is None:
            bits = min(26, max(16, (16 * self.grams.size).bit_length()))
            self._present = np.zeros(1 << bits, dtype=bool)
            self._present[self.grams >> np.uint64(64 - bits)] = True
        shift = np.uint64(64 - (self._present.size.bit_length() - 1))
        maybe = np.flatnonzero(self._present[grams >> shift])
        found = np.full(grams.shape, -1)
        if maybe.size:
            candidates = grams[maybe]
            pos = np.minimum(np.searchsorted(self.grams, candidates), self.grams.size - 1)
            found[maybe] = np.where(self.grams[pos] == candidates, pos, -1)
        return found


def build_eval_index(
    eval_sets: Mapping[str, Iterable[str | list[str]]], n: int = 8, max_groups: int | None = None
) -> EvalIndex:
    """Index the word ``n``-grams of evaluation texts: ``{set name: [text, ...]}``.

    An item may be a list of texts forming one unit (the records of one
    test-split group), counted once by the common-n-gram rule. With
    ``max_groups``, n-grams found in more than that many units are left out
    now: they are template or boilerplate (a prompt template, MIMIC's
    ``Name: ___ Unit No: ___`` header), not a leak.
    """
    names, parts, labels, stats = [], [], [], {}
    for name, items in eval_sets.items():
        label = len(names)
        names.append(name)
        stat = stats[name] = {"texts": 0, "units": 0, "too_short": 0}
        for item in items:
            texts = [item] if isinstance(item, str) else list(item)
            grams = []
            for text in texts:
                stat["texts"] += 1
                g = line_ngram_hashes(text, n)
                stat["too_short"] += not g.size
                grams.append(g)
            unit = sorted_unique(np.concatenate(grams)) if grams else np.empty(0, np.uint64)
            if unit.size:
                stat["units"] += 1
                parts.append(unit)
                labels.append(np.full(unit.size, label, dtype=np.uint16))
    if not parts:
        empty = np.empty(0, dtype=np.uint64)
        return EvalIndex(n, empty, np.empty(0, np.int64), np.empty(0, np.uint16), names, stats)
    grams, first, units = np.unique(np.concatenate(parts), return_index=True, return_counts=True)
    sets = np.concatenate(labels)[first]
    common = 0
    if max_groups is not None:
        keep = units <= max_groups
        common = int((~keep).sum())
        grams, units, sets = grams[keep], units[keep], sets[keep]
    return EvalIndex(n, grams, units, sets, names, stats, common)


def decontaminate(
    records: list[dict], index: EvalIndex, tally: Tally | None = None, max_groups: int = 10
) -> list[dict]:
    """Drop the records sharing a word n-gram (``index.n``, default 8) with an evaluation text.

    Why 8 and not GPT-3's 13: the evaluation texts here are short. Many MMLU
    medical questions have fewer than 13 words, so they have no
    13-gram at all and a leaked question would pass unseen; an 8-word run
    shared with a question (or a question and its first choice) is still
    rare by chance. What guards against chance matches is the common-n-gram
    rule: an n-gram found in more than ``max_groups`` groups counting both
    sides (evaluation units plus training groups) is template or boilerplate,
    not a leak, and is ignored. N-grams are taken within lines and without
    numbers (:func:`line_ngram_hashes`), so none mixes our template with a
    source's text or matches by a lab value. Two passes over ``records`` (a list): one to
    find hits and count the training groups per hit n-gram, one to drop.
    The dropped count per evaluation set is ``tally.dropped[set name]``.
    """
    tally = tally if tally is not None else Tally()
    hits, common = _hits(records, index, max_groups)
    tally.counts["common_ngrams_ignored"]["all"] = index.common_ignored + len(common)
    return list(tally.count(_leak_verdicts(records, index, hits, common)))


def _hits(records: list[dict], index: EvalIndex, max_groups: int) -> tuple[dict[int, np.ndarray], set[int]]:
    """Per record (by position) the index positions of its n-grams the index holds, and the common ones among
    them: those in more than ``max_groups`` groups, evaluation units and training groups together."""
    hits: dict[int, np.ndarray] = {}
    train_groups: dict[int, set[str]] = defaultdict(set)
    for i, record in enumerate(records):
        grams = sorted_unique(line_ngram_hashes(prompt_text(record) + "\n" + record["reference"], index.n))
        positions = index.lookup(grams)  # sorted queries: numpy's binary searches then walk forward
        found = positions[positions >= 0]
        if found.size:
            hits[i] = found
            for gram in found.tolist():
                if len(train_groups[gram]) <= max_groups:
                    train_groups[gram].add(record["group"])
    common = {g for g, groups in train_groups.items() if int(index.units[g]) + len(groups) > max_groups}
    return hits, common


def _leak_verdicts(
    records: list[dict], index: EvalIndex, hits: dict[int, np.ndarray], common: set[int]
) -> Iterator[tuple[dict, Keep | Drop]]:
    """Each record dropped for the evaluation set of its first leaked n-gram, or kept."""
    for i, record in enumerate(records):
        leaks = [g for g in hits[i].tolist() if g not in common] if i in hits else []
        if leaks:
            reason = index.names[int(index.sets[leaks[0]])]
            yield record, Drop(reason, partial(_leaked_ngram, record, index, leaks))
        else:
            yield record, Keep(record)


def _leaked_ngram(record: dict, index: EvalIndex, leaks: list[int]) -> dict:
    """The example of a leak: the first leaked n-gram in the record's text, as words."""
    for line in (prompt_text(record) + "\n" + record["reference"]).split("\n"):
        tokens = words(line)
        at = np.flatnonzero(np.isin(ngram_hashes(tokens, index.n), index.grams[leaks]))
        if at.size:  # the first in the text
            return {"ngram": " ".join(tokens[int(at[0]) : int(at[0]) + index.n])}
    return {}


def benchmark_texts(items: Iterable[dict]) -> list[str]:
    """Evaluation texts of multiple-choice items (:func:`medllm.data.benchmarks.load_benchmark`): the question followed
    by its choices, one text per item, so a short question still has n-grams (question into first choice)."""
    return [" ".join([item["question"], *item["choices"]]) for item in items]
