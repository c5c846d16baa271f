"""Multiple-choice benchmarks: loaders, lm-eval log-likelihood scoring, per-benchmark metrics and report lines."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from medllm.config import Config, EvalConfig, ModelConfig
from medllm.data.benchmarks import MMLU_HEADER, MMLU_MEDICAL, load_benchmark
from medllm.errors import MedllmError
from medllm.eval.mcq import (
    build_requests,
    encode_pair,
    evaluate_benchmarks,
    evaluate_mcq,
    loglikelihoods,
    report_lines,
    select_shots,
)
from medllm.eval.report import plot_reliability
from medllm.models import load_model, load_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


MEDQA = [
    {
        "question": "A 60-year-old man has crushing chest pain and sweating. Most likely diagnosis?",
        "answer": "Myocardial infarction",
        "options": {"A": "Costochondritis", "B": "Myocardial infarction", "C": "Reflux", "D": "Anxiety"},
        "answer_idx": "B",
        "meta_info": "step2&3",
    },
    {
        "question": "Which vitamin deficiency causes scurvy?",
        "answer": "Vitamin C",
        "options": {"A": "Vitamin A", "B": "Vitamin B12", "C": "Vitamin C", "D": "Vitamin D"},
        "answer_idx": "C",
        "meta_info": "step1",
    },
]
MEDMCQA = [
    {
        "id": "q1",
        "question": "Drug of choice for absence seizures?",
        "opa": "Ethosuximide",
        "opb": "Phenytoin",
        "opc": "Carbamazepine",
        "opd": "Gabapentin",
        "cop": 1,
        "choice_type": "single",
        "exp": "",
        "subject_name": "Pharmacology",
        "topic_name": "Antiepileptics",
    },
    {
        "id": "q2",
        "question": "Largest organ of the body?",
        "opa": "Liver",
        "opb": "Skin",
        "opc": "Brain",
        "opd": "Lung",
        "cop": 2,
        "choice_type": "single",
        "exp": "",
        "subject_name": "Anatomy",
        "topic_name": "General",
    },
]
PUBMEDQA = {
    "101": {
        "QUESTION": "Does daily walking lower blood pressure?",
        "CONTEXTS": ["Adults walked daily for 12 weeks.", "Systolic pressure fell by 5 mmHg."],
        "LABELS": ["METHODS", "RESULTS"],
        "MESHES": [],
        "YEAR": "2001",
        "final_decision": "yes",
        "LONG_ANSWER": "Yes.",
    },
    "102": {
        "QUESTION": "Is coffee linked to gout?",
        "CONTEXTS": ["A cohort was followed."],
        "LABELS": ["METHODS"],
        "MESHES": [],
        "YEAR": "2002",
        "final_decision": "maybe",
        "LONG_ANSWER": "Unclear.",
    },
}


@pytest.fixture
def files(tmp_path):
    pubmedqa = tmp_path / "ori_pqal.json"
    pubmedqa.write_text(json.dumps(PUBMEDQA))
    return {
        "medqa": write_jsonl(tmp_path / "medqa.jsonl", MEDQA),
        "medmcqa": write_jsonl(tmp_path / "dev.json", MEDMCQA),
        "pubmedqa": pubmedqa,
    }


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    cfg = ModelConfig(name=str(tiny_llama_dir), dtype="float32")
    return load_model(cfg), load_tokenizer(cfg)


def test_mmlu_medical_has_the_six_subjects_and_1089_questions():
    items = load_benchmark("mmlu_medical")
    assert Counter(it["subject"] for it in items) == MMLU_MEDICAL
    assert len(items) == 1089 and len({it["id"] for it in items}) == 1089
    assert all(len(it["choices"]) == 4 and 0 <= it["answer"] < 4 for it in items)


def test_mmlu_header_rows_are_skipped_and_bad_answers_rejected(tmp_path):
    row = {
        "question": "Which bone is in the thigh?",
        "answer_a": "Femur",
        "answer_b": "Ulna",
        "answer_c": "Radius",
        "answer_d": "Tibia",
        "correct_answer": "A",
        "topic": "anatomy",
    }
    other = dict(row, topic="astronomy")
    items = load_benchmark(
        "mmlu_medical", write_jsonl(tmp_path / "m.jsonl", [dict(MMLU_HEADER, topic="anatomy"), row, other])
    )
    assert [it["question"] for it in items] == [row["question"]] and items[0]["answer"] == 0
    with pytest.raises(MedllmError, match=r"m2\.jsonl:2: field 'correct_answer'"):
        load_benchmark("mmlu_medical", write_jsonl(tmp_path / "m2.jsonl", [row, dict(row, correct_answer="E")]))


def test_user_benchmark_formats_load(files):
    medqa = load_benchmark("medqa", files["medqa"])
    assert medqa[0]["choices"][medqa[0]["answer"]] == "Myocardial infarction" and medqa[1]["subject"] == "step1"
    medmcqa = load_benchmark("medmcqa", files["medmcqa"])
    assert [it["choices"][it["answer"]] for it in medmcqa] == ["Ethosuximide", "Skin"]
    pubmedqa = load_benchmark("pubmedqa", files["pubmedqa"])
    assert [it["answer"] for it in pubmedqa] == [0, 2] and "Systolic pressure" in pubmedqa[0]["context"]


@pytest.mark.parametrize(
    "name, rows, message",
    [
        ("medqa", [MEDQA[0], {k: v for k, v in MEDQA[1].items() if k != "question"}], r"f:2: missing field 'question'"),
        ("medqa", [dict(MEDQA[0], answer_idx="E")], r"f:1: field 'answer_idx' 'E'"),
        ("medqa", [MEDQA[0], "{not json"], r"f:2: invalid JSON"),
        ("medmcqa", [{k: v for k, v in MEDMCQA[0].items() if k != "cop"}], r"f:1: no field 'cop'.*test split"),
        ("medmcqa", [dict(MEDMCQA[0], cop=0)], r"f:1: field 'cop' must be 1-4"),
        ("medmcqa", [dict(MEDMCQA[0], opc="")], r"f:1: field 'opc' must be a non-empty str"),
        ("medqa", [], r"f: no medqa questions found"),
    ],
)
def test_bad_benchmark_files_name_file_and_line(tmp_path, name, rows, message):
    with pytest.raises(MedllmError, match=message):
        load_benchmark(name, write_jsonl(tmp_path / "f", rows))


def test_bad_pubmedqa_names_the_pmid(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps({"7": dict(PUBMEDQA["101"], final_decision="perhaps")}))
    with pytest.raises(MedllmError, match=r"ori_pqal.json \[PMID 7\]: field 'final_decision'"):
        load_benchmark("pubmedqa", path)
    path.write_text("{}")
    with pytest.raises(MedllmError, match="no pubmedqa questions"):
        load_benchmark("pubmedqa", path)


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """One unbatched forward pass over context + continuation tokens; sum of the continuation's log-softmax."""
    context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    positions = range(len(context_ids) - 1, ids.shape[1] - 1)
    return sum(logprobs[p, t].item() for p, t in zip(positions, continuation_ids))


def test_batched_loglikelihood_equals_direct_computation(tiny):
    model, tokenizer = tiny
    requests = [
        ("Question: What causes scurvy?\nAnswer:", " A"),
        ("Question: What causes scurvy?\nAnswer:", " B"),
        ("Question: Chest pain with sweating suggests", " acute myocardial infarction"),
        ("A short one:", " no"),
        ("Trailing space here ", "maybe not"),
        ("Abstract: a long abstract " + "with many words " * 30 + "\nAnswer:", " yes"),
    ]
    batched = loglikelihoods(model, tokenizer, requests, batch_size=4)
    direct = [direct_loglikelihood(model, tokenizer, c, x) for c, x in requests]
    np.testing.assert_allclose(batched, direct, atol=1e-4)
    assert loglikelihoods(model, tokenizer, requests, batch_size=1) == pytest.approx(batched, abs=1e-4)


def test_encode_pair_moves_trailing_space_to_the_continuation(tiny):
    _, tokenizer = tiny
    context_ids, continuation_ids = encode_pair(tokenizer, "Answer: ", "A")
    assert tokenizer.decode(context_ids) == "Answer:" and tokenizer.decode(continuation_ids) == " A"


def test_prompts_follow_lm_eval_and_never_show_the_scored_item(tiny):
    _, tokenizer = tiny
    items = load_benchmark("mmlu_medical")[:3]
    shots = select_shots(items[0], items, 2)
    assert [s["id"] for s in shots] == [items[1]["id"], items[2]["id"]]
    context, continuation = build_requests(items[0], [], chat=False)[1]
    assert context.startswith(
        f"The following are multiple choice questions (with answers) about {items[0]['subject']}.\n\n"
    )
    assert context.endswith("\nD. " + items[0]["choices"][3].strip() + "\nAnswer:") and continuation == " B"
    context, continuation = build_requests(items[0], shots, chat=True, tokenizer=tokenizer)[0]
    assert context.endswith("<|im_start|>assistant\n") and continuation == "A"
    assert context.count("<|im_start|>user") == 3 and items[0]["question"].strip() in context


def test_evaluate_mcq_metrics_match_predictions(tiny, files, tmp_path):
    model, tokenizer = tiny
    items = load_benchmark("medmcqa", files["medmcqa"])
    result = evaluate_mcq(model, tokenizer, items, k_shot=1, batch_size=2)
    predictions = result["predictions"]
    assert result["n"] == 2 and result["acc_norm"] is None and "1-shot" in result["protocol"]
    assert result["acc"]["micro"]["value"] == np.mean([p["correct"] for p in predictions])
    assert set(result["acc"]["subjects"]) == {"Pharmacology", "Anatomy"}
    assert all(1 / 4 <= p["confidence"] <= 1 for p in predictions)

    pubmedqa = evaluate_mcq(model, tokenizer, load_benchmark("pubmedqa", files["pubmedqa"]), chat=True)
    assert pubmedqa["acc_norm"] is not None and "chat template" in pubmedqa["protocol"]
    assert "`yes`, `no`, `maybe`" in pubmedqa["protocol"]
    with pytest.raises(MedllmError, match="no benchmark items"):
        evaluate_mcq(model, tokenizer, [])

    lines = report_lines({"base": result, "finetuned": result})
    assert any(line.startswith("| **micro** | 2 |") for line in lines)
    assert sum("| Anatomy | 1 |" in line for line in lines) == 1
    (tmp_path / "plots").mkdir()
    plot_reliability({"base": result["calibration"]}, tmp_path / "plots" / "reliability.png", "confidence", "t")
    assert (tmp_path / "plots" / "reliability.png").read_bytes().startswith(b"\x89PNG")


def test_evaluate_benchmarks_compares_models_on_the_same_sampled_items(tiny_llama_dir, files):
    from peft import LoraConfig, get_peft_model

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))
    base = load_model(ModelConfig(name=str(tiny_llama_dir), dtype="float32"))
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    cfg = EvalConfig(
        benchmarks=["medqa", "medmcqa"],
        benchmark_files={"medqa": files["medqa"], "medmcqa": files["medmcqa"]},
        benchmark_max_items=1,
        batch_size=2,
    )
    results, rows = evaluate_benchmarks(model, tokenizer, Config(eval=cfg), ["base", "finetuned"])
    assert set(results) == {"medqa", "medmcqa"}
    for name, result in results.items():
        assert result["base"]["n"] == result["finetuned"]["n"] == 1 and result["sampled_from"] == 2
        assert len(rows[name]) == 1 and {"base_pred", "finetuned_pred", "finetuned_correct"} <= rows[name][0].keys()
        test = result["finetuned_vs_base"]
        assert test["only_first"] + test["only_second"] <= 1 and 0 <= test["p_value"] <= 1
    # the adapter (random B, so not a no-op) changes the log-likelihoods: the two runs are different models
    run = evaluate_mcq(model, tokenizer, load_benchmark("medqa", files["medqa"]), batch_size=2)
    with model.disable_adapter():
        plain = evaluate_mcq(model, tokenizer, load_benchmark("medqa", files["medqa"]), batch_size=2)
    assert run["predictions"][0]["loglikelihoods"] != plain["predictions"][0]["loglikelihoods"]
    assert any("McNemar" in line for line in report_lines(results["medqa"]))
    with pytest.raises(MedllmError, match="needs a file"):
        evaluate_benchmarks(model, tokenizer, Config(eval=EvalConfig(benchmarks=["pubmedqa"])), ["base"])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loglikelihoods_are_the_float32_log_softmax_of_the_models_logits(tiny_llama_dir, tiny, dtype):
    """In bf16 a log-probability near -11 (a 49k vocabulary) is only resolved to 1/16, enough to tie or flip
    near-equal choices: the scorer takes the float32 log-softmax of the logits the model returned, in a bf16
    model too, never the bf16 one."""
    _, tokenizer = tiny
    model = load_model(ModelConfig(name=str(tiny_llama_dir), dtype=dtype))
    assert model.dtype == getattr(torch, dtype)
    forwards = {}
    hook = model.register_forward_hook(
        lambda _m, _a, kwargs, out: forwards.update({tuple(kwargs["input_ids"][0].tolist()): out.logits}),
        with_kwargs=True,
    )
    requests = [(f"Question {i}: which finding?\nAnswer:", f" {letter}") for i in range(3) for letter in "ABCD"]
    requests.append(("Chest pain with sweating suggests", " acute myocardial infarction"))
    scores = loglikelihoods(model, tokenizer, requests, batch_size=1)
    hook.remove()
    for (context, continuation), score in zip(requests, scores):
        context_ids, target = encode_pair(tokenizer, context, continuation)
        logits = forwards[tuple(context_ids + target[:-1])][0, -len(target) :]
        rows = torch.arange(len(target)), torch.tensor(target)
        assert score == torch.log_softmax(logits.float(), -1)[rows].sum().item()
        if dtype == "bfloat16":
            assert score != torch.log_softmax(logits, -1)[rows].float().sum().item()


def test_exact_ties_count_as_wrong_not_as_choice_a(tiny, files, monkeypatch):
    model, tokenizer = tiny
    items = load_benchmark("medmcqa", files["medmcqa"])  # answers: A, then B
    # A = B on the first (answer A), B = C on the second (answer B): an argmax would take A and B, right twice
    tied = [-1.0, -1.0, -3.0, -4.0, -2.0, -0.5, -0.5, -9.0]
    monkeypatch.setattr("medllm.eval.mcq.loglikelihoods", lambda *args, **kwargs: tied)
    result = evaluate_mcq(model, tokenizer, items)
    assert [(p["pred"], p["correct"]) for p in result["predictions"]] == [(None, False), (None, False)]
    assert result["ties"] == 2 and result["acc"]["micro"]["value"] == 0
    assert result["predictions"][0]["confidence"] == pytest.approx(np.exp(-1) / np.exp([-1, -1, -3, -4]).sum())
    assert "tie for the top counting as wrong" in result["protocol"]
    assert "exact tie (counted wrong): base 2." in report_lines({"base": result})[-1]
