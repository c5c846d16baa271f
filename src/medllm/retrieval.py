"""BM25 over disease profiles: candidate diagnoses for a case, and a baseline.

A profile is every way a finding of the disease may be written: its HPO name,
synonyms and layperson names. Tokens are lower-case words and word
bigrams without stop words.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np

from medllm.knowledge import Disease

STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it of on or the to with without "
    "abnormal abnormality presents presenting patient year years old month months man woman boy girl "
    "infant newborn onset since".split())


def tokenize(text: str) -> list[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS]
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


def profile_text(disease: Disease) -> str:
    parts = []
    for f in disease.findings:
        parts += [f.name, *f.synonyms, *f.lay_names]
    return " ; ".join(parts)


class DiseaseIndex:
    """BM25 (bm25s, Lucene variant) over the profiles of ``diseases``."""

    def __init__(self, diseases: list[Disease]):
        if not diseases:
            raise ValueError("cannot index an empty disease list")
        self.diseases = diseases
        self._bm25 = bm25s.BM25()
        self._bm25.index([tokenize(profile_text(d)) for d in diseases], show_progress=False)
        self._vocab = set(self._bm25.vocab_dict)

    def search(self, text: str, k: int) -> list[tuple[Disease, float]]:
        """The ``k`` best-matching diseases, best first (ties broken by index order)."""
        tokens = [t for t in tokenize(text) if t in self._vocab]
        scores = self._bm25.get_scores(tokens) if tokens else np.zeros(len(self.diseases))
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.diseases[i], float(scores[i])) for i in order]
