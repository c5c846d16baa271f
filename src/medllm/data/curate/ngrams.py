"""Word n-gram hashes, what near-duplicate detection and decontamination compare: stable 64-bit hashes of
lower-cased word runs, rolled in numpy rather than hashed one n-gram at a time."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from medllm.data.curate.text import ASCII

_WORD = re.compile(r"\w+")
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: the rolling hash below is a polynomial in it, modulo 2**64
# bytes.translate table splitting UTF-8 text into words: ASCII letters, digits and _ kept (the ASCII \w),
# other ASCII → space, bytes of non-ASCII characters kept (the non-word ones are replaced beforehand)
_WORD_BYTES = bytes(c if chr(c).isalnum() or c == ord("_") or c >= 128 else ord(" ") for c in range(256))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``): what shingles and n-grams are made of, punctuation ignored."""
    return _WORD.findall(text.casefold())


def _word_bytes(text: str) -> list[bytes]:
    """:func:`words` as UTF-8 bytes, without a regex: the non-ASCII characters that are not word characters
    (``\\w`` is ``str.isalnum`` or ``_``) become spaces, then one translate and ``split`` cut the words."""
    text = text.casefold()
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) != len(text):
        for c in set(raw.translate(None, ASCII).decode("utf-8", "surrogatepass")):
            if not c.isalnum():
                text = text.replace(c, " ")
        raw = text.encode("utf-8", "surrogatepass")
    return raw.translate(_WORD_BYTES).split()


def _word_hash(word: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little")


_WORD_HASHES: dict[bytes, int] = {}  # UTF-8 word → _word_hash(word); cleared when it reaches the limit below
_WORD_HASHES_MAX = 1 << 18


def _word_hashes(tokens: list[bytes]) -> np.ndarray:
    """``_word_hash`` of each token, from a cache dict (one lookup a word, no Python frame per word)."""
    cache = _WORD_HASHES
    values = list(map(cache.get, tokens))
    if None in values:
        if len(cache) >= _WORD_HASHES_MAX:
            cache.clear()
        for i, value in enumerate(values):
            if value is None:
                values[i] = cache[tokens[i]] = _word_hash(tokens[i])
    return np.array(values, dtype=np.uint64)


def rolled_ngrams(h: np.ndarray, n: int) -> np.ndarray:
    """The ``n``-gram hashes of word hashes ``h``: a polynomial in ``_MUL`` over each run of ``n``."""
    count = len(h) - n + 1
    if n < 1 or count <= 0:
        return np.empty(0, dtype=np.uint64)
    grams = h[:count].copy()
    for j in range(1, n):
        grams *= _MUL
        grams += h[j : j + count]
    return grams


def ngram_hashes(tokens: list[str], n: int) -> np.ndarray:
    """64-bit hashes of the word ``n``-grams of ``tokens`` (position order; empty when fewer than ``n``).

    Each word is hashed once (blake2b, cached) and the n-grams are rolled in
    numpy, not a hash call per n-gram. Stable across runs and processes.
    """
    return rolled_ngrams(_word_hashes([t.encode("utf-8", "surrogatepass") for t in tokens]), n)


def text_word_hashes(text: str) -> np.ndarray:
    """``_word_hash`` of each of the :func:`words` of ``text`` (the fast path of dedupe and decontamination)."""
    return _word_hashes(_word_bytes(text))


_DIGITS = b"0123456789"


def line_ngram_hashes(text: str, n: int) -> np.ndarray:
    """Word ``n``-gram hashes of each line of ``text``, leaving out n-grams across lines or with a number.

    Our prompt templates put their own wording on lines of its own ("Patient
    summary:", "Summarise the key findings ..."), so no n-gram mixes template
    words with a source's text: such mixed n-grams recur across a few records
    of one template and read as leaks. N-grams holding a number ("white blood
    cell count 7 1 109 l") recur by chance across unrelated patients; a leaked
    text still shares its many number-free n-grams.
    """
    grams = []
    for line in text.split("\n"):
        tokens = _word_bytes(line)
        if len(tokens) < n:
            continue
        rolled = rolled_ngrams(_word_hashes(tokens), n)
        digits = np.fromiter((t != t.translate(None, _DIGITS) for t in tokens), dtype=bool, count=len(tokens))
        if digits.any():
            runs = np.concatenate(([0], np.cumsum(digits)))
            rolled = rolled[runs[n:] == runs[:-n]]
        grams.append(rolled)
    return np.concatenate(grams) if grams else np.empty(0, dtype=np.uint64)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d array (sorted, each value once) by sorting and comparing neighbours: numpy 2's
    hash-based unique is slower on the few hundred n-grams of a note."""
    values = np.sort(values)
    if values.size < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]
