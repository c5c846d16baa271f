import pytest

from medllm.config import ModelConfig

CONVERSATIONS = [
    [{"role": "user", "content": "Patient: cough"}],
    [{"role": "user", "content": "Patient: a longer vignette, so the batch needs padding"}],
]
CANDIDATES = [["Asthma", "Community-acquired pneumonia"], ["Migraine", "Subarachnoid haemorrhage", "X"]]


def test_candidate_loglikelihood_equals_a_direct_computation(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from medllm.generation import ANSWER_PREFIX, candidate_loglikelihoods
    from medllm.models import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    scores = candidate_loglikelihoods(model, tokenizer, CONVERSATIONS, CANDIDATES, batch_size=2)
    for conversation, names, got in zip(CONVERSATIONS, CANDIDATES, scores):
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


def test_candidate_loglikelihoods_are_float32_for_a_bf16_model(tiny_llama_dir):
    """Summed bf16 log-probabilities would be bf16 numbers, 1/16 apart near -11 (a 49k vocabulary): the
    scores are float32 sums of float32 log-probabilities, even when the model runs in bf16."""
    import torch

    from medllm.generation import candidate_loglikelihoods
    from medllm.models import load_model, load_tokenizer

    cfg = ModelConfig(name=str(tiny_llama_dir), dtype="bfloat16")
    model = load_model(cfg)
    assert model.dtype == torch.bfloat16
    scores = candidate_loglikelihoods(model, load_tokenizer(cfg), CONVERSATIONS, CANDIDATES, batch_size=2)
    totals = [total for row in scores for total, _ in row]
    assert len(totals) == 5 and all(torch.tensor(t).bfloat16().item() != t for t in totals)


def test_finetuned_weights_merge_and_restore_the_base_exactly_enough(tiny_llama_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from medllm.generation import adapter_mode
    from medllm.models import load_model

    model = get_peft_model(
        load_model(ModelConfig(name=str(tiny_llama_dir), dtype="float32")),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    ).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        adapter = model(ids).logits
        with model.disable_adapter():
            base = model(ids).logits
        with adapter_mode(model, "finetuned"):
            merged = model(ids).logits
        with adapter_mode(model, "base"):
            restored = model(ids).logits
    assert not torch.allclose(adapter, base, atol=1e-3), "the random adapter changes the model"
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(restored, base, atol=1e-5, rtol=1e-5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shared_prompt_scores_equal_one_at_a_time_scores(tiny_llama_dir, dtype):
    """One prompt pass and one batch of continuations score each answer as its own full forward pass does."""
    import torch
    from transformers import AutoModelForCausalLM

    from medllm.generation import shared_prompt_loglikelihoods
    from medllm.models import load_tokenizer
    from medllm.prompts import rerank_answer

    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_llama_dir)))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=getattr(torch, dtype)).eval()
    messages = [{"role": "user", "content": "Patient: seizures, hypotonia. Which candidate?"}]
    answers = [rerank_answer(n) for n in ("Dravet syndrome", "X", "Angelman syndrome, type 2 (AS2)")]
    scores = shared_prompt_loglikelihoods(model, tokenizer, messages, answers)
    prompt = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    for answer, (total, count) in zip(answers, scores):
        whole = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": answer}], tokenize=True, return_dict=False
        )
        target = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert whole[: len(prompt) + len(target)] == prompt + target  # the tokens training sees
        with torch.no_grad():
            logits = model(torch.tensor([prompt + target])).logits[0].float()
        direct = torch.log_softmax(logits, -1)[len(prompt) - 1 : -1].gather(-1, torch.tensor(target)[:, None]).sum()
        assert count == len(target)
        assert total == pytest.approx(direct.item(), abs=1e-3 if dtype == "float32" else 0.05 * count)
