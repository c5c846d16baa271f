"""Real published cases: every case counts (a diagnosis missing from the knowledge base is a miss), intervals,
the ``medllm eval`` section on phenopackets written here, its report, and the packaged sample."""

from __future__ import annotations

import json
import math
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import CASES
from conftest import phenopacket_config as config_for
from medllm.config import DEFAULT_RECIPE, Config, PhenotypeConfig, load_config
from medllm.data.phenopackets import PhenopacketCase, load_phenopackets, split_by_disease
from medllm.errors import MedllmError
from medllm.eval.diagnosis import score
from medllm.eval.phenopackets import (
    CaseResult,
    evaluate_cases,
    evaluate_phenopackets,
    methods,
    phenopackets_path,
    summarise,
)
from medllm.eval.report import render_report
from medllm.eval.rerank import TEXT
from medllm.eval.stats import expected_calibration_error, wilson_interval
from medllm.phenotype.explain import confidences
from medllm.phenotype.lirical import LiricalRanker
from medllm.phenotype.rank import case_scores, case_terms, load_ranker, rank_case

REPO = Path(__file__).resolve().parents[2]


def case(case_id: str, disease: str, observed, excluded=()) -> PhenopacketCase:
    return PhenopacketCase(case_id, "C", tuple(observed), tuple(excluded), None, None, None, (disease,), "", "f.json")


def test_missing_diseases_count_as_misses(tiny_kb):
    cases = [
        case("a", "OMIM:1", ["HP:0000003", "HP:0000006"]),  # rank 1
        case("b", "OMIM:2", ["HP:0000004"]),  # rank 1
        case("c", "OMIM:3", ["HP:0000006", "HP:0009999"]),  # an unknown term is dropped, not an error
        case("d", "OMIM:404", ["HP:0000003"]),  # not in the knowledge base
    ]
    results = evaluate_cases(LiricalRanker(tiny_kb), cases)
    assert [r.rank for r in results][:2] == [1, 1] and math.isinf(results[3].rank)
    assert results[2].unknown_terms == 1
    summary = summarise(results, n_boot=200)
    assert summary["n"] == 4 and summary["coverage"] == 0.75
    assert summary["top10"] == 0.75  # the miss counts in the denominator
    assert summary["covered"]["top10"] == 1.0
    low, high = summary["bootstrap"]["top1"]
    assert 0 <= low <= summary["top1"] <= high <= 1


def test_a_sibling_subtype_first_is_a_hit_at_the_series_level_only():
    sibling_first = CaseResult("a", "OMIM:1", 2, 0.0, 0, series_rank=1)
    summary = summarise([sibling_first, CaseResult("b", "OMIM:2", 1, 0.0, 0, series_rank=1)], n_boot=0)
    assert summary["top1"] == 0.5 and summary["series"]["top1"] == 1.0
    assert "series" not in summarise([CaseResult("c", "OMIM:3", 1, 0.0, 0)], n_boot=0)  # e.g. a re-ranker's


def test_wilson_interval():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0


# ----------------------------------------------------------------------------- the medllm eval section


def test_every_case_is_ranked_by_every_method_and_misses_count(phenopacket_store, tiny_kb):
    folder, archive = phenopacket_store
    metrics, rows = evaluate_phenopackets(None, None, config_for(folder), [], kb=tiny_kb)
    assert metrics["n"] == 6 and metrics["ranked_diseases"] == 3 and "part" in metrics["protocol"]
    assert metrics["served"] == "served ranker (lirical as configured, pretest prior)"
    assert set(metrics["methods"]) == {
        metrics["served"],
        "LIRICAL-style, excluded findings used",
        "LIRICAL-style, observed findings only",
        "Phenomizer-style (query), observed findings only",
        TEXT,  # no model: only the model-free part of the re-rank evaluation
    }
    assert metrics["rerank"] is None
    cases = load_phenopackets(folder).cases
    for name, (ranker, used) in methods(config_for(folder), tiny_kb)[0].items():
        summary = metrics["methods"][name]
        assert summary["n"] == 6 and summary["coverage"] == pytest.approx(5 / 6)  # OMIM:404 is a miss
        expected = {r.case_id: r.rank for r in evaluate_cases(ranker, cases, used)}
        for row in rows:
            assert row["rank"][name] == (None if math.isinf(expected[row["id"]]) else expected[row["id"]])
            # the top ids are the ranker's own ranking of the case
            top = rank_case(ranker, *next((c.observed, c.excluded) for c in cases if c.id == row["id"]), used, top=3)
            assert row["top3"][name] == [d.id for d in top]
    assert next(r for r in rows if r["id"] == "p6")["rank"] == dict.fromkeys(metrics["methods"])
    # the excluded finding B1 (which OMIM:1 always has, and OMIM:2 never) changes LIRICAL's score of case p3
    lirical = methods(config_for(folder), tiny_kb)[0]["LIRICAL-style, excluded findings used"][0]
    p3 = next(c for c in cases if c.id == "p3")
    with_excluded = rank_case(lirical, p3.observed, p3.excluded, True, top=None)
    observed_only = rank_case(lirical, p3.observed, p3.excluded, False, top=None)
    assert [d.score for d in with_excluded] != [d.score for d in observed_only]
    assert evaluate_phenopackets(None, None, config_for(archive), [], kb=tiny_kb)[1] == rows  # a zip reads the same
    assert metrics["published"]["n"] == 5212 and "different case set" in metrics["published"]["source"]


def test_part_is_disease_disjoint_and_max_cases_samples(phenopacket_store, tiny_kb):
    folder, _ = phenopacket_store
    parts = split_by_disease(load_phenopackets(folder).cases)
    for part in ("validation", "test"):
        assert parts[part]
        metrics, rows = evaluate_phenopackets(None, None, config_for(folder, phenopackets_part=part), [], kb=tiny_kb)
        assert {r["id"] for r in rows} == {c.id for c in parts[part]} and metrics["n"] == len(parts[part])
        assert f"the {part} part" in metrics["protocol"]
    metrics, rows = evaluate_phenopackets(None, None, config_for(folder, phenopackets_max_cases=2), [], kb=tiny_kb)
    assert metrics["n"] == len(rows) == 2 and "seeded sample of 2" in metrics["protocol"]
    again = evaluate_phenopackets(None, None, config_for(folder, phenopackets_max_cases=2), [], kb=tiny_kb)[1]
    assert [r["id"] for r in again] == [r["id"] for r in rows]


def test_served_method_is_the_configured_ranker_with_its_prior(phenopacket_store, tiny_kb):
    folder, _ = phenopacket_store
    cases = load_phenopackets(folder).cases
    for pheno in (
        PhenotypeConfig(ranker="lirical", use_excluded=False, prior_weight=0.0),
        PhenotypeConfig(
            ranker="phenomizer", phenomizer_mode="funsimavg", phenomizer_size_penalty=0.5, phenomizer_reverse_weight=0
        ),
    ):
        setups, served = methods(config_for(folder).model_copy(update={"phenotype": pheno}), tiny_kb)
        assert served == f"served ranker ({pheno.ranker} as configured, pretest prior)"
        ranker, used = setups[served]
        assert used == pheno.use_excluded
        expected = evaluate_cases(load_ranker(pheno, tiny_kb), cases, pheno.use_excluded)
        assert [r.rank for r in evaluate_cases(ranker, cases, used)] == [r.rank for r in expected]


def test_the_served_confidence_is_scored_against_the_diagnosis(phenopacket_store, tiny_kb):
    """The first disease's confidence as the API shows it (softmax at the configured temperature), its ECE."""
    folder, _ = phenopacket_store
    cases = load_phenopackets(folder).cases
    for temperature in (1.0, 0.1):
        config = config_for(folder)
        config = config.model_copy(update={"phenotype": PhenotypeConfig(confidence_temperature=temperature)})
        metrics, _ = evaluate_phenopackets(None, None, config, [], kb=tiny_kb)
        ranker = load_ranker(config.phenotype, tiny_kb)
        shown = []
        for c in cases:
            scores = case_scores(ranker, case_terms(tiny_kb, c.observed, c.excluded), c.age_years, c.sex)
            shown.append(float(confidences(scores, temperature).max()))
        block = metrics["calibration"]
        assert block["temperature"] == temperature and block["n"] == len(cases)
        assert block["mean_confidence"] == pytest.approx(np.mean(shown))
        hits = [r.rank == 1 for r in evaluate_cases(ranker, cases, True)]
        assert block["ece"] == pytest.approx(expected_calibration_error(shown, hits))


def test_bad_input_names_the_field_or_file(tmp_path, tiny_kb):
    with pytest.raises(MedllmError, match="does not exist"):
        evaluate_phenopackets(None, None, config_for(tmp_path / "nope.zip"), [], kb=tiny_kb)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.json").write_text("{}")
    with pytest.raises(MedllmError, match=r"eval.phenopackets: no phenopackets in .*empty \(1 files skipped\)"):
        evaluate_phenopackets(None, None, config_for(tmp_path / "empty"), [], kb=tiny_kb)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "p1.json").write_text(json.dumps(CASES[0]))  # one disease: it falls in the dev part
    with pytest.raises(MedllmError, match=r"eval\.phenopackets_part: the test part of .*one has no cases"):
        evaluate_phenopackets(None, None, config_for(tmp_path / "one", phenopackets_part="test"), [], kb=tiny_kb)


def test_report_section_lists_methods_served_and_the_cited_anchors(phenopacket_store, tiny_kb):
    result, _ = evaluate_phenopackets(None, None, config_for(phenopacket_store[0]), [], kb=tiny_kb)
    conditions = {"retrieval": score([["a"]], ["a"], ["hpo"])}
    base = {"model": "m", "adapter": None, "n": 1, "vocabulary_size": 1, "num_candidates": 1, "retriever": "bm25"}
    report = render_report({**base, "protocol": "p", "conditions": conditions, "phenopackets": result}, []).splitlines()
    assert "## Real published cases (phenopackets)" in report
    header = (
        "| method | n | diseases | top-1 % | top-3 % | top-10 % | MRR x100 | series top-1 / top-10 % | coverage % "
        "| ms/case |"
    )
    rows = report[report.index(header) + 2 : report.index(header) + 6]
    assert rows[0].startswith("| LIRICAL-style, excluded findings used | 6 | 4 |")
    assert rows[3].startswith(f"| {result['served']} | 6 | 4 |")
    assert all("| 83.3 |" in row for row in rows)
    assert "| Exomiser, phenotype only | 35.5 | 46.3 | 58.5 |" in report
    assert any("Reese et al., Eur J Hum Genet 2026" in line for line in report)
    ece = f"ECE {result['calibration']['ece']:.3f} of the first disease's confidence"
    assert any(line.startswith("Confidence shown by the served ranker") and ece in line for line in report)


# ----------------------------------------------------------------------------- the packaged sample


def test_packaged_sample_loads_with_its_license_and_ships_as_package_data():
    path = phenopackets_path("packaged")
    loaded = load_phenopackets(path)
    assert len(loaded) == 301 and not loaded.skipped
    per_disease = Counter(c.disease_ids[0] for c in loaded.cases)
    assert max(per_disease.values()) <= 3 and len(per_disease) == 114
    parts = split_by_disease(loaded.cases)
    assert not {c.disease_ids[0] for c in parts["test"]} & {
        c.disease_ids[0] for c in parts["dev"] + parts["validation"]
    }
    license_text = (path.parent / "LICENSE").read_text()
    assert license_text.startswith("BSD 3-Clause License") and "Copyright (c) 2022, Monarch Initiative" in license_text
    assert "b694d17e" in (path.parent / "README.md").read_text()
    # what pyproject.toml's package-data ships covers the sample's files
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medllm"]
    package = REPO / "src" / "medllm"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert {path, path.parent / "LICENSE", path.parent / "README.md"} <= shipped


def test_default_recipe_scores_the_packaged_sample_test_part():
    cfg = load_config(DEFAULT_RECIPE).eval
    assert cfg.phenopackets == "packaged" and cfg.phenopackets_part == "test"
    assert phenopackets_path(cfg.phenopackets).is_file()
    assert phenopackets_path(Config(eval={"phenopackets": "./packaged"}).eval.phenopackets) == Path("packaged")
