"""An optional fallback for :func:`medllm.phenotype.findings.recognise`: a phrase with no lexical match
mapped to the HPO term whose name or synonym embeds nearest, when the cosine similarity clears a threshold.

    fallback = EmbeddingFallback(lexicon_for(kb))        # MiniLM (medllm.retrieval.embed), off by default
    recognise("floppy infant", kb, fallback=fallback)

The term texts are the lexicon's names and synonyms (abbreviations left out); their embeddings
are computed once (tens of seconds on a CPU for the full HPO) and cached as ``.npy`` under
``$MEDLLM_CACHE_DIR/phenotype/``, keyed by a hash of the texts and the encoder's name. Embedding
matches carry ``source="embedding"`` and their similarity as ``score``: a caller can show them
for confirmation rather than trust them like a lexical match.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medllm.io import atomic_path
from medllm.phenotype.lexicon import Lexicon

Encoder = Callable[[list[str]], np.ndarray]  # texts → unit-length rows
DEFAULT_THRESHOLD = 0.8


def minilm(texts: list[str]) -> np.ndarray:
    from medllm.retrieval import embed

    return embed(texts)


def term_texts(lexicon: Lexicon) -> tuple[list[str], np.ndarray]:
    """One text per (term, name or synonym) of the lexicon, and the term column of each."""
    pairs = {(e.term, e.text) for entries in lexicon.entries.values() for e in entries if e.case_words is None}
    pairs = sorted(pair for pair in pairs if pair[1])
    return [text for _, text in pairs], np.array([term for term, _ in pairs], dtype=np.int64)


def _cache_file(texts: list[str], encoder_name: str) -> Path:
    digest = hashlib.sha256(encoder_name.encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    root = Path(os.environ.get("MEDLLM_CACHE_DIR", "~/.cache/medllm")).expanduser()
    return root / "phenotype" / f"term-embeddings-{digest.hexdigest()[:16]}.npy"


class EmbeddingFallback:
    """Callable on a list of phrases: for each, ``(term column, similarity)`` or None below ``threshold``."""

    def __init__(
        self,
        lexicon: Lexicon,
        threshold: float = DEFAULT_THRESHOLD,
        encode: Encoder | None = None,
        cache: bool = True,
    ):
        self.threshold = threshold
        self.encode = encode or minilm
        self.texts, self.columns = term_texts(lexicon)
        self._cache = cache
        self._matrix: np.ndarray | None = None

    @property
    def matrix(self) -> np.ndarray:
        if self._matrix is None:
            name = getattr(self.encode, "__qualname__", type(self.encode).__name__)
            path = _cache_file(self.texts, f"{getattr(self.encode, '__module__', '')}.{name}")
            if self._cache and path.is_file():
                self._matrix = np.load(path)
            else:
                self._matrix = np.asarray(self.encode(self.texts), dtype=np.float32)
                if self._cache:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                        np.save(fh, self._matrix)
        return self._matrix

    def __call__(self, phrases: list[str]) -> list[tuple[int, float] | None]:
        if not phrases:
            return []
        similarity = np.asarray(self.encode(list(phrases)), dtype=np.float32) @ self.matrix.T
        best = similarity.argmax(axis=1)
        scores = similarity[np.arange(len(phrases)), best]
        return [
            (int(self.columns[b]), float(s)) if s >= self.threshold else None for b, s in zip(best, scores, strict=True)
        ]
