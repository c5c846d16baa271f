"""What goes into the model and how its answer is read back.

Training and inference build prompts with the same function and the model's
own chat template, so the fine-tuned model sees at inference exactly the
shape it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medllm.knowledge import Disease, normalize_name

ASSISTANT = "You are a clinical decision-support assistant."  # every task's system prompt starts so
SYSTEM_PROMPT = f"{ASSISTANT} You help clinicians rank a differential diagnosis."
RATIONALE = "Rationale:"


def lower_first(text: str) -> str:
    """Lower-case a term's first letter for use mid-sentence, keeping acronyms ("EMG")."""
    return text if text[:2].isupper() else text[:1].lower() + text[1:]


def describe_candidate(disease: Disease, findings: int = 2) -> str:
    """A candidate as retrieval evidence: its name and its most frequent findings."""
    typical = sorted(disease.findings, key=lambda f: -f.frequency)[:findings]
    return f"{disease.name} (typically {', '.join(lower_first(f.name) for f in typical)})"


def build_messages(vignette: str, candidates: list[str] | None, differential_size: int = 5) -> list[dict]:
    """System + user turns for one case; ``candidates`` None means closed-book."""
    user = f"Patient: {vignette}\n"
    if candidates:
        user += "Candidate diagnoses (in no particular order):\n" + "".join(f"- {c}\n" for c in candidates)
    user += f"Rank the {differential_size} most likely, then give a one-line rationale."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class CandidateEvidence:
    """A candidate of the phenotype ranking with the case's findings sorted for and against it."""

    name: str
    matched: tuple[str, ...] = ()  # present findings the disease is annotated with (or a related term)
    unexplained: tuple[str, ...] = ()  # present findings it is not annotated with
    against: tuple[str, ...] = ()  # excluded findings the disease has


EVIDENCE_NAMED = 5  # findings named per kind of evidence and candidate; the rest are counted


def _named(labels: tuple[str, ...]) -> str:
    """The first :data:`EVIDENCE_NAMED` labels, and how many more: a published case lists up to 50 findings, and
    every one named for each of K candidates would take thousands of tokens (the whole case is in the vignette)."""
    rest = len(labels) - EVIDENCE_NAMED
    return ", ".join(labels[:EVIDENCE_NAMED]) + (f" and {rest} more" if rest > 0 else "")


def describe_evidence(candidate: CandidateEvidence) -> str:
    """One prompt line: the candidate and what of the case it explains, leaves unexplained, and contradicts."""
    parts = [f"explains {_named(candidate.matched)}" if candidate.matched else "explains none of the findings"]
    if candidate.unexplained:
        parts.append(f"not {_named(candidate.unexplained)}")
    if candidate.against:
        parts.append(f"but has {_named(candidate.against)}, which the patient lacks")
    return f"{candidate.name}: {'; '.join(parts)}"


def rerank_messages(vignette: str, candidates: list[CandidateEvidence]) -> list[dict]:
    """System + user turns asking which candidate fits best; the answer is :func:`rerank_answer`.

    The re-ranker scores each candidate by the log-likelihood of ``rerank_answer(name)`` after
    these turns, and training targets the true disease's, so both see one shape.
    """
    user = (
        f"Patient: {vignette}\n"
        "Candidate diagnoses with the evidence for and against each (in no particular order):\n"
        + "".join(f"- {describe_evidence(c)}\n" for c in candidates)
        + "Name the diagnosis that best explains the findings, then give a one-line rationale."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def rerank_answer(name: str, rationale: str | None = None) -> str:
    """The answer a re-rank prompt expects: the name on its own line (scored), then the rationale."""
    return f"{name}\n" + (f"{RATIONALE} {rationale}" if rationale else "")


def format_answer(ranked: list[str], rationale: str) -> str:
    lines = [*(f"{i}. {name}" for i, name in enumerate(ranked, 1)), f"{RATIONALE} {rationale}"]
    return "\n".join(lines)


def parse_differential(text: str) -> list[str]:
    """The diagnoses of an answer, in order: its numbered lines before the rationale.

    An answer without numbered lines falls back to its non-empty lines.
    """
    body = text.split(RATIONALE, 1)[0]
    numbered = re.findall(r"^\s*\d+\s*[.)]\s*(.+?)\s*$", body, flags=re.MULTILINE)
    if numbered:
        return numbered
    return [line.strip(" -*•") for line in body.splitlines() if line.strip(" -*•")]


class DiseaseMatcher:
    """Maps a generated diagnosis line to a disease of the vocabulary.

    Rule, on normalised text (lower-case ASCII words and numbers, see
    :func:`medllm.knowledge.normalize_name`): (1) the line equals a disease's
    name or synonym; else (2) the longest name or synonym that occurs in the
    line as a whole-word sequence. Matching whole words respects subtype
    numbers: "epileptic encephalopathy 9" does not match "... 96".
    """

    def __init__(self, diseases: list[Disease]):
        self._names: dict[str, str] = {}
        for d in diseases:
            for name in [d.name, *d.synonyms]:
                self._names.setdefault(normalize_name(name), d.id)
        self._by_length = sorted(self._names, key=len, reverse=True)

    def match(self, line: str) -> str | None:
        key = normalize_name(line)
        if not key:
            return None
        if key in self._names:
            return self._names[key]
        padded = f" {key} "
        for name in self._by_length:
            if len(name) <= len(key) and f" {name} " in padded:
                return self._names[name]
        return None

    def rank(self, answer: str, k: int) -> list[str]:
        """The first ``k`` distinct disease ids named in ``answer``."""
        ranked: list[str] = []
        for line in parse_differential(answer):
            disease_id = self.match(line)
            if disease_id and disease_id not in ranked:
                ranked.append(disease_id)
            if len(ranked) == k:
                break
        return ranked
