"""Records for the curation tests: invented words (no two seeds share a 5-gram by chance) in the common schema."""

from __future__ import annotations

import random

from medllm.data.sources import SOURCES, make_record

SYLLABLES = ["ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zo", "ba", "de", "fu", "gi", "ho"]
VOCAB = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES[:4]]  # 900 invented words
QUESTION = "Which of the following enzymes is most specific for acute damage to the myocardium in adults"


def text(seed: int, n: int = 60) -> str:
    """``n`` invented words; two seeds share almost no 5-gram."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def record(source: str, key: str, group: str, prompt: str, reference: str = "the answer") -> dict:
    return make_record(source, SOURCES[source], key, group, prompt, reference, {})


def user(r: dict) -> str:
    return r["messages"][1]["content"]
