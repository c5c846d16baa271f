"""Free-text Q&A scoring: SQuAD token F1 and ROUGE-L on hand-made answers."""

import json

import pytest

from medllm.eval.qa import normalize_tokens, rouge_l, token_f1


def test_token_f1_follows_squad_normalisation():
    assert normalize_tokens("The patient's BP, 120/80!") == ["patients", "bp", "12080"]
    assert token_f1("Aspirin 81 mg daily", "aspirin 81 mg daily.") == 1.0
    # prediction "aspirin daily" vs reference "aspirin 81 mg daily": precision 1, recall 1/2
    assert token_f1("aspirin daily", "aspirin 81 mg daily") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("metformin", "insulin") == 0.0
    assert token_f1("the", "a") == 1.0, "both empty after normalisation"
    assert token_f1("", "insulin") == 0.0


def test_rouge_l_is_the_longest_common_subsequence_f_measure():
    # LCS of "started on iv antibiotics" and "patient started iv antibiotics" = started iv antibiotics (3)
    got = rouge_l(["started on iv antibiotics"], ["patient started iv antibiotics"])[0]
    assert got == pytest.approx(2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4))
    assert rouge_l(["fevers"], ["fever"])[0] == 1.0, "Porter stemming"
    assert rouge_l(["no overlap here"], ["completely different"])[0] == 0.0


def test_evaluate_qa_scores_both_models_on_a_sampled_ehrdsqa_file(tmp_path, tiny_llama_dir):
    from peft import LoraConfig, get_peft_model

    from medllm.config import ModelConfig, load_config
    from medllm.errors import MedllmError
    from medllm.eval.qa import evaluate_qa, report_lines
    from medllm.models import load_model, load_tokenizer

    notes = [
        {
            "original_id": i,
            "note": f"Discharge Diagnosis: condition {i}\nMedications: drug {i}",
            "qa_pairs": [
                {"question": "What was the discharge diagnosis?", "answer": f"condition {i}"},
                {"question": "Which medication?", "answer": f"drug {i}"},
            ],
            "extended_context": False,
            "note_id": f"1000000{i}-DS-1",
            "subject_id": 1000000 + i,
            "hadm_id": i,
            "note_type": "DS",
        }
        for i in range(3)
    ]
    path = tmp_path / "mimic_iv_note_qa.json"
    path.write_text(json.dumps(notes))
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))
    model = get_peft_model(
        load_model(ModelConfig(name=str(tiny_llama_dir), dtype="float32")),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    cfg = load_config(
        None,
        {
            "eval.qa_source": "ehrdsqa",
            "eval.qa_file": str(path),
            "eval.qa_max_items": "4",
            "eval.qa_max_new_tokens": "4",
            "eval.batch_size": "2",
        },
    )
    result, rows = evaluate_qa(model, tokenizer, cfg, ["base", "finetuned"])
    assert result["n"] == 4 and result["sampled_from"] == 6 and "seeded sample of 6" in result["protocol"]
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    for which in ("base", "finetuned"):
        block = result["models"][which]
        assert block["token_f1"]["n"] == 4
        assert block["token_f1"]["mean"] == pytest.approx(sum(r[f"{which}_token_f1"] for r in rows) / 4, abs=1e-3)
        assert 0 <= block["rouge_l"]["mean"] <= 1
    assert set(result["finetuned_minus_base"]) == {"token_f1", "rouge_l"}
    assert any("ROUGE-L" in line for line in report_lines(result))
    _again, _ = evaluate_qa(model, tokenizer, cfg, ["base"])
    assert [r["id"] for r in _] == [r["id"] for r in rows], "the sample is seeded"
    with pytest.raises(MedllmError, match="expected"):
        evaluate_qa(
            model,
            tokenizer,
            load_config(None, {"eval.qa_source": "ehrdsqa", "eval.qa_file": str(tmp_path / "missing.json")}),
            ["base"],
        )
