"""The pretest prior: prevalence class, age range and sex, weighed into a ranker's scores."""

import math

import numpy as np
import pytest
import yaml

from conftest import write_hpo
from medllm.errors import MedllmError
from medllm.phenotype.kb import build_knowledge_base
from medllm.phenotype.phenomizer import PhenomizerRanker
from medllm.phenotype.pretest import PretestPrior, PriorParams, PriorRanker
from medllm.phenotype.rank import rank_case

A1 = "HP:0000003"


@pytest.fixture
def kb(tmp_path):
    """The tiny HPO with a common female-only row for ages 12-55 that shares A1 with OMIM:1 and ORPHA:9."""
    entry = {"name": "Ectopic pregnancy", "icd10": "O00.90", "prevalence": "common", "sex": "female",
             "ages": [12, 55], "findings": {"A1": 0.5}, "source": "a test"}  # fmt: skip
    table = tmp_path / "t.yaml"
    table.write_text(yaml.safe_dump({"diseases": [entry]}))
    return build_knowledge_base(write_hpo(tmp_path / "hpo"), common=table)


def test_log_prior_counts_class_age_and_sex(kb):
    prior = PretestPrior(kb, np.arange(kb.n_diseases), PriorParams(age_mismatch=2.0, sex_mismatch=9.0))
    common = math.log(1e-2) - math.log(1e-6)
    assert kb.disease_ids[0] == "ICD10:O00.90"
    assert prior.log_prior()[0] == pytest.approx(common) and np.all(prior.log_prior()[1:] == 0)
    assert prior.log_prior(age=30, sex="female")[0] == pytest.approx(common)
    assert prior.log_prior(age=70, sex="female")[0] == pytest.approx(common - 2.0)
    assert prior.log_prior(age=30, sex="male")[0] == pytest.approx(common - 9.0)
    assert prior.log_prior(age=30, sex="unknown")[0] == pytest.approx(common)  # an unknown sex costs nothing


def test_the_weighted_prior_reorders_a_tie(kb):
    base = PhenomizerRanker(kb, None, mode="query")
    ties = rank_case(PriorRanker(base, PriorParams(weight=0.0)), [A1], top=3)
    assert {r.id for r in ties[:3]} == {"ICD10:O00.90", "OMIM:1", "ORPHA:9"} and ties[0].score == ties[2].score
    ranked = PriorRanker(base, PriorParams(weight=0.1))
    assert rank_case(ranked, [A1], age=30, sex="female")[0].id == "ICD10:O00.90"
    male = [r.id for r in rank_case(ranked, [A1], age=30, sex="male", top=None)]
    assert male.index("ICD10:O00.90") > max(male.index("OMIM:1"), male.index("ORPHA:9"))  # limited to women


def test_the_prior_weighs_less_the_more_findings_there_are(kb):
    # an averaged score: n findings are n times the evidence, so the prior counts 1/n against them
    base = PhenomizerRanker(kb, None, mode="query")
    ranked = PriorRanker(base, PriorParams(weight=0.1))
    common = math.log(1e-2) - math.log(1e-6)
    one, two = kb.resolve([A1])[0], kb.resolve([A1, "HP:0000005"])[0]
    row = list(kb.disease_ids[base.rows]).index("ICD10:O00.90")
    assert (ranked.score(one) - base.score(one))[row] == pytest.approx(0.1 * common)
    assert (ranked.score(two) - base.score(two))[row] == pytest.approx(0.1 * common / 2)


def test_negative_prior_parameters_are_refused():
    with pytest.raises(MedllmError, match="weight"):
        PriorParams(weight=-1)
