import pytest

from medllm.config import ModelConfig
from medllm.eval.diagnosis import score, top1_calibration


def test_score_counts_top_k_per_source():
    rankings = [["a", "b"], ["x", "b"], [], ["c"]]
    golds = ["a", "b", "b", "d"]
    result = score(rankings, golds, ["hpo", "hpo", "common", "common"])
    assert result["all"]["n"] == 4
    assert result["all"]["top1"]["hits"] == 1
    assert result["all"]["top5"]["hits"] == 2
    assert result["hpo"]["top5"]["accuracy"] == 1.0
    assert result["common"]["top5"]["accuracy"] == 0.0
    assert result["all"]["answered"] == 0.75


def test_calibration_block_from_known_confidences():
    block = top1_calibration([0.9, 0.9, 0.3, 0.3], [True, False, False, False])
    assert block["n"] == 4 and block["top1"]["hits"] == 1
    # bins: 0.9 -> accuracy 0.5 (gap 0.4), 0.3 -> accuracy 0 (gap 0.3): ECE = (2*0.4 + 2*0.3) / 4
    assert block["ece"] == pytest.approx(0.35)
    assert [b["n"] for b in block["bins"]] == [2, 2]


def test_candidate_loglikelihood_equals_a_direct_computation(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from medllm.generation import ANSWER_PREFIX, candidate_loglikelihoods
    from medllm.models import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    conversations = [
        [{"role": "user", "content": "Patient: cough"}],
        [{"role": "user", "content": "Patient: a longer vignette, so the batch needs padding"}],
    ]
    candidates = [["Asthma", "Community-acquired pneumonia"], ["Migraine", "Subarachnoid haemorrhage", "X"]]
    scores = candidate_loglikelihoods(model, tokenizer, conversations, candidates, batch_size=2)
    for conversation, names, got in zip(conversations, candidates, scores):
        context = (
            tokenizer.apply_chat_template(conversation, tokenize=True, add_generation_prompt=True, return_dict=False)
            + tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
        )
        for name, (total, count) in zip(names, got):
            continuation = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([context + continuation])).logits[0], -1)
            direct = sum(logprobs[len(context) - 1 + j, t].item() for j, t in enumerate(continuation))
            assert count == len(continuation)
            assert total == pytest.approx(direct, abs=1e-3)
