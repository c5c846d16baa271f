"""Why a disease is in a phenotype differential: the case's findings matched to its annotated terms.

A present finding matches an annotated term that is the same term (``exact``), one of its
ancestors (``ancestor``: the patient's finding is a kind of the annotated one) or one of its
descendants (``descendant``: the annotated finding is a kind of the patient's); the closest
such term is kept, with its annotated frequency. An excluded finding is listed when the
disease has it or a descendant annotated: evidence against. Confidences are a softmax of
the ranker's scores over every ranked disease.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from medllm.phenotype.kb import PHENOTYPIC_ABNORMALITY, ROOT, KnowledgeBase
from medllm.phenotype.matrices import row
from medllm.prompts import CandidateEvidence


@dataclass(frozen=True)
class TermMatch:
    case_term: int  # column of the patient's finding
    disease_term: int  # column of the disease's annotated term
    match: str  # exact, ancestor or descendant
    frequency: float | None  # annotated frequency; None when the annotation gives none
    excluded: bool  # the patient's finding is excluded (evidence against)


def confidences(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(scores / temperature)``: a probability over the whole ranked list (each row's, for a matrix of
    cases × diseases)."""
    return softmax(np.asarray(scores, dtype=np.float64) / temperature, axis=-1)


class Explainer:
    """Matches a case's term columns to one disease's annotations in the knowledge base."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.below = kb.closure.T.tocsr()  # [i, j] = 1 when j is i or one of its descendants
        self.depth = np.diff(kb.closure.indptr)  # number of ancestors: more is more specific
        self.trivial = {kb.term_index(ROOT), kb.term_index(PHENOTYPIC_ABNORMALITY)}

    def _annotated(self, disease_row: int) -> dict[int, float | None]:
        freq = self.kb.frequency[disease_row]
        return {int(t): (None if np.isnan(v) else float(v)) for t, v in zip(freq.indices, freq.data)}

    def _closest(self, term: int, annotated: dict[int, float | None], excluded: bool) -> TermMatch | None:
        if term in annotated:
            return TermMatch(term, term, "exact", annotated[term], excluded)
        kinds = [] if excluded else [("ancestor", row(self.kb.closure, term))]
        kinds.append(("descendant", row(self.below, term)))
        for kind, related in kinds:
            hits = [int(t) for t in related if int(t) in annotated and int(t) not in self.trivial]
            if hits:
                # ancestors: the most specific; descendants: the most general (closest to the finding)
                best = max(hits, key=lambda t: (self.depth[t] if kind == "ancestor" else -self.depth[t], -t))
                return TermMatch(term, best, kind, annotated[best], excluded)
        return None

    def evidence(self, disease_row: int, observed, excluded=()) -> list[TermMatch]:
        """Matches of the case's present findings, then its excluded findings the disease has."""
        annotated = self._annotated(disease_row)
        found = [self._closest(int(t), annotated, False) for t in observed]
        found += [self._closest(int(t), annotated, True) for t in excluded]
        return [m for m in found if m is not None]


def candidate_evidence(kb: KnowledgeBase, name: str, matches: list[TermMatch], observed) -> CandidateEvidence:
    """The prompt's view of one candidate: the labels of the case's findings for, not for, and against it."""
    label = kb.term_names
    matched = [m.case_term for m in matches if not m.excluded]
    explained = set(matched)
    return CandidateEvidence(
        name=name,
        matched=tuple(str(label[t]) for t in matched),
        unexplained=tuple(str(label[t]) for t in observed if int(t) not in explained),
        against=tuple(str(label[m.case_term]) for m in matches if m.excluded),
    )
