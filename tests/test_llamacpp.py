"""The GGUF in llama.cpp: bad files named, the chat prompt as transformers renders it, float32 log-likelihoods."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from medllm.errors import MedllmError
from medllm.llamacpp import ContextExceeded, check_gguf, loglikelihoods, open_gguf, prompt_tokens

pytest.importorskip("llama_cpp")

MESSAGES = [
    {"role": "system", "content": "You are a clinician."},
    {"role": "user", "content": "Fever 39.2 °C, neck stiffness and photophobia since this morning. Diagnosis?"},
]
ANSWERS = ["Bacterial meningitis", "Migraine", "Systemic lupus erythematosus"]


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    model = open_gguf(tiny_gguf, n_ctx=256)
    yield model
    model.close()


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(
        tiny_llama_dir
    )


def test_prompt_is_rendered_by_the_files_template_as_transformers_renders_it(llm, hf):
    _, tokenizer = hf
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert prompt_tokens(llm, MESSAGES) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_loglikelihoods_equal_the_transformers_scorer_in_float32(llm, hf):
    from medllm.generation import shared_prompt_loglikelihoods

    expected = shared_prompt_loglikelihoods(*hf, MESSAGES, ANSWERS)
    got = loglikelihoods(llm, MESSAGES, ANSWERS)
    assert [n for _, n in got] == [n for _, n in expected]
    np.testing.assert_allclose([s for s, _ in got], [s for s, _ in expected], rtol=1e-4, atol=1e-4)
    # the same again: the prompt's cached state is not left dirty by the previous call
    assert loglikelihoods(llm, MESSAGES, ANSWERS[::-1]) == got[::-1]


def test_an_answer_past_the_context_window_is_refused_naming_the_limit(llm):
    with pytest.raises(ContextExceeded, match=r"context window of 256"):
        loglikelihoods(llm, [{"role": "user", "content": "fever " * 300}], ANSWERS)


def test_bad_files_are_named(tmp_path, tiny_gguf):
    with pytest.raises(MedllmError, match=r"missing\.gguf: GGUF file not found"):
        check_gguf(tmp_path / "missing.gguf")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:4096])
    with pytest.raises(MedllmError, match=r"truncated\.gguf: not a readable GGUF file"):
        open_gguf(truncated)
    other = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(other, "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(MedllmError, match=r"gpt2\.gguf: a 'gpt2' GGUF"):
        open_gguf(other)
