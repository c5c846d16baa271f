"""The phenopacket evaluation's re-rank part: the case as text, and the model re-ranking the top K."""

import json
import math

import pytest

from conftest import phenopacket_config as config_for
from medllm.config import Config, ModelConfig
from medllm.data.phenopackets import load_phenopackets
from medllm.eval.diagnosis import score
from medllm.eval.phenopackets import evaluate_cases, evaluate_phenopackets
from medllm.eval.report import render_report
from medllm.eval.rerank import PHENOTYPE, TEXT, prepare, text_results
from medllm.phenotype.findings import case_ids, recognise
from medllm.phenotype.rank import load_ranker
from medllm.phenotype.rerank import case_text


def test_the_case_is_written_as_the_monarch_benchmark_does_and_read_back(phenopacket_store, tiny_kb):
    cases = {c.id: c for c in load_phenopackets(phenopacket_store[0]).cases}
    assert case_text(cases["p2"], tiny_kb) == (
        "A 5-year-old female patient presented with B1. However, the following features were excluded: A2."
    )
    text = case_text(cases["p2"], tiny_kb)
    assert case_ids(recognise(text, tiny_kb)) == (["HP:0000006"], ["HP:0000004"])  # the excluded finding too
    ranker = load_ranker(config_for(phenopacket_store[0]).phenotype, tiny_kb)
    read = text_results(ranker, list(cases.values()), use_excluded=True)
    assert [r.rank for r in read] == [r.rank for r in evaluate_cases(ranker, list(cases.values()), True)]


def test_prepare_finds_the_diagnosis_among_the_k_or_keeps_its_rank(phenopacket_store, tiny_kb):
    cases = load_phenopackets(phenopacket_store[0]).cases
    ranker = load_ranker(config_for(phenopacket_store[0]).phenotype, tiny_kb)
    for p in prepare(ranker, cases, k=2, use_excluded=True):
        assert len(p.top.ids) == 2 and (p.gold is None) == (p.rank > 2)
        if p.gold is not None:
            assert p.top.ids[p.gold] in p.case.disease_ids and p.rank == p.gold + 1
    assert math.isinf(next(p for p in prepare(ranker, cases, 2, True) if p.case.id == "p6").rank)  # not ranked


@pytest.fixture
def tiny_model(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from medllm.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    return model, load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))


def test_rerankers_are_fitted_on_dev_scored_on_the_part_and_saved(phenopacket_store, tiny_kb, tiny_model, tmp_path):
    base = config_for(phenopacket_store[0], phenopackets_part="test")
    config = Config.model_validate(
        {**base.model_dump(), "output_dir": tmp_path / "run", "rerank": {"top_k": 2}, "model": {"name": "tiny"}}
    )
    metrics, rows = evaluate_phenopackets(*tiny_model, config, ["base", "finetuned"], kb=tiny_kb)
    rerank = metrics["rerank"]
    names = [block["method"] for block in rerank["models"].values()]
    assert {TEXT, PHENOTYPE, *names} <= set(metrics["methods"])
    for block in rerank["models"].values():
        assert block["dev_top1_hits"]["fused"] >= block["dev_top1_hits"]["phenotype"]
        assert f"w = {block['fusion']['weight']:g}" in block["method"]
        assert block["vs_phenotype_top1"]["n"] == metrics["n"] and block["calibration"]["n"] == metrics["n"]
        for row in rows:  # a diagnosis beyond the K keeps its phenotype rank; within, it stays within
            fused, phenotype = row["rank"][block["method"]], row["rank"][PHENOTYPE]
            assert fused == phenotype if phenotype is None or phenotype > 2 else fused <= 2
    saved = json.loads(config.run.rerank.read_text())
    assert set(saved["fits"]) == {"base", "finetuned"} and saved["adapter"] == str(config.run.adapter)
    assert saved["dev_n"] == rerank["fit_n"] > 0
    conditions = {"retrieval": score([["a"]], ["a"], ["hpo"])}
    base = {"model": "m", "adapter": None, "n": 1, "vocabulary_size": 1, "num_candidates": 1, "retriever": "bm25"}
    report = render_report({**base, "protocol": "p", "conditions": conditions, "phenopackets": metrics}, [])
    for name in names:  # each re-ranker: a row of the table and a line with its fit and paired test
        assert f"| {name} | {metrics['n']} |" in report
        assert f"- {name}: log-likelihood " in report and "exact McNemar p = " in report
