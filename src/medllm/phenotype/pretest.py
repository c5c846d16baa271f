"""A pretest prior: how likely each disease is for this patient before any finding is weighed.

The similarity rankers treat a one-in-a-million syndrome and pneumonia alike; a clinician
does not. The log-prior of a disease is the log of its prevalence class (common 1e-2,
uncommon 1e-4, rare 1e-6 of people, counted from rare), minus ``age_mismatch`` when the
patient's age lies outside the ages it presents in, minus ``sex_mismatch`` when it is limited
to the other sex (ectopic pregnancy in a man: as good as impossible). :class:`PriorRanker`
adds ``weight`` times it, divided by the number of observed findings, to a ranker's score;
weight 0 is the ranker alone. The division is Bayes' rule for scores that average over the
findings: the evidence of n findings adds up (n times the average) against one prior, so a
common disease that explains one of thirty findings does not outrank the syndrome that
explains them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medllm.errors import MedllmError
from medllm.phenotype.annotations import PREVALENCE_CLASSES

CLASS_LOG_PREVALENCE = {"rare": math.log(1e-6), "uncommon": math.log(1e-4), "common": math.log(1e-2)}


@dataclass(frozen=True)
class PriorParams:
    weight: float = 0.0  # score units per nat of prior; 0: no prior
    age_mismatch: float = math.log(100)  # nats lost when the age is outside the disease's ages
    sex_mismatch: float = math.log(1e6)  # nats lost when the disease is limited to the other sex

    def __post_init__(self) -> None:
        for name in ("weight", "age_mismatch", "sex_mismatch"):
            if getattr(self, name) < 0:
                raise MedllmError(f"prior {name} must be >= 0, got {getattr(self, name)}")


class PretestPrior:
    """The log-prior of every disease in ``rows`` of a knowledge base, for a patient's age and sex."""

    def __init__(self, kb, rows: np.ndarray, params: PriorParams = PriorParams()):
        self.params = params
        unknown = set(kb.prevalence[rows].tolist()) - set(PREVALENCE_CLASSES)
        if unknown:
            raise MedllmError(f"knowledge base: unknown prevalence class {', '.join(sorted(unknown))}")
        base = CLASS_LOG_PREVALENCE["rare"]
        self.prevalence = np.array([CLASS_LOG_PREVALENCE[c] - base for c in kb.prevalence[rows].tolist()])
        self.sex = kb.disease_sex[rows].astype(str)
        self.low, self.high = kb.ages[rows, 0], kb.ages[rows, 1]

    def log_prior(self, age: float | None = None, sex: str | None = None) -> np.ndarray:
        """Nats per disease, rare diseases of a matching age and sex at 0; an unknown age or sex costs nothing."""
        prior = self.prevalence.copy()
        if age is not None:
            with np.errstate(invalid="ignore"):
                outside = (age < self.low) | (age > self.high)
            prior[outside] -= self.params.age_mismatch
        if sex in ("female", "male"):
            prior[(self.sex != "") & (self.sex != sex)] -= self.params.sex_mismatch
        return prior


def weighted_prior(weight: float, log_prior: np.ndarray, n_observed: int) -> np.ndarray:
    """What the prior adds to an averaged score: ``weight`` × the log-prior per observed finding."""
    return weight * log_prior / max(n_observed, 1)


class PriorRanker:
    """A ranker whose scores add :func:`weighted_prior` of the patient's age and sex."""

    def __init__(self, base, params: PriorParams = PriorParams()):
        self.base, self.kb, self.rows, self.params = base, base.kb, base.rows, params
        self.name = getattr(base, "name", type(base).__name__)
        self.prior = PretestPrior(base.kb, base.rows, params)

    def score(self, observed: np.ndarray, excluded: np.ndarray = (), age=None, sex=None) -> np.ndarray:
        scores = self.base.score(observed, excluded)
        if not self.params.weight:
            return scores
        return scores + weighted_prior(self.params.weight, self.prior.log_prior(age, sex), len(observed))
