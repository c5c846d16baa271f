"""Step 4, dedupe: exact duplicates (hashed, case and whitespace folded) and near duplicates (MinHash LSH over
word shingles) dropped, the first of each kept."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from medllm.data.curate.ngrams import rolled_ngrams, sorted_unique, text_word_hashes
from medllm.data.curate.tally import Drop, Keep, Tally, counted
from medllm.data.curate.text import prompt_text

log = logging.getLogger(__name__)


def _band_key(band: bytes) -> bytes:
    """An LSH band (4 bytes a row) stored as 8 bytes; a rare collision only adds a candidate, which is checked."""
    return hashlib.blake2b(band, digest_size=8).digest()


def exact_key(record: dict) -> bytes:
    """16-byte hash of the prompt and reference, case-folded and whitespace-collapsed."""
    text = " ".join(prompt_text(record).casefold().split()) + "\x1f" + " ".join(record["reference"].casefold().split())
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))  # MurmurHash3's finalizer


class _Signer:
    """MinHash signatures of 32-bit shingle hashes, equal to ``datasketch.MinHash(num_perm, hashfunc=int)``'s.

    For datasketch's default ``affine32`` scheme (``fmix32(h) * a + b`` in
    uint32, minimum over the shingles) the signature is one numpy expression
    over all shingles, twice as fast as ``update_batch``, which goes through a
    Python list; it is checked against ``update_batch`` on the first call, and
    ``update_batch`` is used when it differs or for another scheme.
    """

    def __init__(self, num_perm: int):
        from datasketch import MinHash

        self.minhash = MinHash(num_perm=num_perm, hashfunc=int)  # inputs are already hashes
        a, b = self.minhash.permutations
        self.a, self.b = (a, b) if getattr(self.minhash, "scheme", None) == "affine32" else (None, None)
        self.checked = False
        self.dtype = self.minhash.hashvalues.dtype

    def _datasketch(self, shingles: np.ndarray) -> np.ndarray:
        self.minhash.clear()
        self.minhash.update_batch(shingles.tolist())
        return self.minhash.hashvalues

    def __call__(self, shingles: np.ndarray) -> np.ndarray:
        if self.a is None:
            return self._datasketch(shingles)
        h = shingles.astype(np.uint32)
        s1, m1, s2, m2 = _FMIX32
        h ^= h >> s1
        h *= m1
        h ^= h >> s2
        h *= m2
        h ^= h >> s1
        signature = np.multiply.outer(h, self.a)
        signature += self.b
        signature = signature.min(axis=0)
        if not self.checked:
            self.checked = True
            if not np.array_equal(signature, self._datasketch(shingles)):
                log.warning("dedupe: MinHash signatures differ from datasketch's; using MinHash.update_batch")
                self.a = None
                return self._datasketch(shingles)
        return signature


class _Buckets:
    """MinHash LSH buckets, as ``datasketch.MinHashLSH`` keeps them, in less memory.

    The bands (``b`` of ``r`` rows, chosen by ``MinHashLSH`` for the threshold)
    and band keys (:func:`_band_key` of the band's big-endian bytes) are
    datasketch's, and so is the order of the candidates a query returns; a
    bucket holds an int while it has one entry (most do) and a set beyond,
    and nothing is kept to remove entries (``MinHashLSH`` also keeps each
    key's band hashes, for removal).
    """

    def __init__(self, threshold: float, num_perm: int):
        from datasketch import MinHashLSH

        self.ranges = MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges
        self.tables: list[dict[bytes, int | set[int]]] = [{} for _ in self.ranges]

    def keys(self, signature: np.ndarray) -> list[bytes]:
        return [_band_key(signature[start:end].byteswap().tobytes()) for start, end in self.ranges]

    def query(self, keys: list[bytes]) -> set[int]:
        candidates: set[int] = set()
        for key, bands in zip(keys, self.tables):
            bucket = bands.get(key)
            if isinstance(bucket, int):
                candidates.add(bucket)
            elif bucket:
                for position in bucket:
                    candidates.add(position)
        return candidates

    def insert(self, position: int, keys: list[bytes]) -> None:
        for key, bands in zip(keys, self.tables):
            bucket = bands.get(key)
            if bucket is None:
                bands[key] = position
            elif isinstance(bucket, int):
                bands[key] = {bucket, position}
            else:
                bucket.add(position)


class _NearDuplicates:
    """The MinHash signatures, LSH buckets, groups and ids of the records kept so far (no text)."""

    def __init__(self, threshold: float, num_perm: int, shingle_words: int):
        self.threshold, self.shingle_words = threshold, shingle_words
        self.buckets = _Buckets(threshold, num_perm)
        self.sign = _Signer(num_perm)
        self.signatures = np.empty((0, num_perm), dtype=self.sign.dtype)
        self.groups: list[str] = []
        self.ids: list[str] = []

    def check(self, record: dict) -> Drop | None:
        """A ``near_duplicate`` drop when a kept record of another group is one, else None (``record`` is kept)."""
        h = text_word_hashes(prompt_text(record) + "\n" + record["reference"])
        shingles = sorted_unique(rolled_ngrams(h, min(self.shingle_words, len(h))) >> np.uint64(32))
        if not shingles.size:
            return None
        signature = self.sign(shingles)
        keys = self.buckets.keys(signature)
        for candidate in self.buckets.query(keys):
            if self.groups[candidate] == record["group"]:
                continue
            similarity = float(np.mean(self.signatures[candidate] == signature))
            if similarity >= self.threshold:
                return Drop("near_duplicate", {"of": self.ids[candidate], "jaccard": round(similarity, 3)})
        position = len(self.ids)
        if position == len(self.signatures):  # grow by half: amortised O(1), no list of small arrays
            grown = np.empty((max(1024, position // 2), self.signatures.shape[1]), dtype=self.signatures.dtype)
            self.signatures = np.concatenate([self.signatures, grown])
        self.signatures[position] = signature
        self.buckets.insert(position, keys)
        self.groups.append(record["group"])
        self.ids.append(record["id"])
        return None


def dedupe(
    records: Iterable[dict],
    tally: Tally | None = None,
    near_threshold: float | None = 0.8,
    num_perm: int = 128,
    shingle_words: int = 5,
) -> Iterator[dict]:
    """Drop exact duplicates (:func:`exact_key`) and near duplicates, keeping the first of each.

    Near duplicates: MinHash of the word ``shingle_words``-grams of prompt and
    reference, candidates from MinHash LSH at ``near_threshold`` (the bands of
    ``datasketch.MinHashLSH``, :class:`_Buckets`), confirmed on the signatures
    (estimated Jaccard >= threshold, so LSH's false positives are not dropped).
    Records of the same ``group`` are never near duplicates of each other: the
    QA pairs of one discharge note, or the cloze queries of one case report,
    share their context by design (their exact duplicates still go). Note that
    one changed word alters up to ``shingle_words`` shingles, so a text needs
    about 50 words for a one-word edit to stay above 0.8. State: a 16-byte hash
    per record and, per kept record, its signature (4 bytes × ``num_perm``, in
    one growing array), LSH buckets, group and id.
    """
    seen_keys: set[bytes] = set()
    near = _NearDuplicates(near_threshold, num_perm, shingle_words) if near_threshold is not None else None

    def verdict(record: dict) -> Keep | Drop:
        key = exact_key(record)
        if key in seen_keys:
            return Drop("exact_duplicate")
        seen_keys.add(key)
        return (near.check(record) if near is not None else None) or Keep(record)

    return counted(((record, verdict(record)) for record in records), tally)
