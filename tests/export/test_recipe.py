"""``medllm export``: merge, Modelfile template, Ollama layout, chat families, errors, SentencePiece and SmolLM2."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import gguf
import pytest
import torch

from conftest import small_config
from medllm.config import OLLAMA_REGISTRY_HOST
from medllm.errors import MedllmError
from medllm.export.gguf import LLAMACPP_TOLERANCE, TOLERANCE
from medllm.export.ollama import blob_path, read_layout
from medllm.export.recipe import chat_family, export
from medllm.prompts import SYSTEM_PROMPT
from medllm.safety import DISCLAIMER

# meta-llama/Llama-2-7b-chat-hf's chat template
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
CONVERSATIONS = [
    [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Patient: fever, rash.\nRank 5."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Fever and cough?"},
        {"role": "assistant", "content": "1. Influenza\nRationale: season."},
        {"role": "user", "content": "And rash?"},
    ],
]


def render_go(template: str, values: dict) -> str:
    """Go's text/template for the subset Ollama templates here use: if/else, range, eq/ne, fields, trimming."""
    pieces = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", template, flags=re.S)
    for i in range(1, len(pieces), 2):
        if pieces[i].startswith("{{-"):
            pieces[i - 1] = pieces[i - 1].rstrip()
        if pieces[i].endswith("-}}"):
            pieces[i + 1] = pieces[i + 1].lstrip()
    tokens = [
        ("text" if i % 2 == 0 else "action", p.strip("{}-").strip() if i % 2 else p) for i, p in enumerate(pieces)
    ]

    def parse(pos: int) -> tuple[list, int, str | None]:
        nodes: list = []
        while pos < len(tokens):
            kind, value = tokens[pos]
            pos += 1
            if kind == "text":
                nodes.append(("text", value))
            elif value in ("end", "else"):
                return nodes, pos, value
            elif value.startswith(("if ", "range ")):
                body, pos, stop = parse(pos)
                other = []
                if stop == "else":
                    other, pos, stop = parse(pos)
                nodes.append((value.split()[0], value.split(None, 1)[1], body, other))
            else:
                nodes.append(("expr", value))
        return nodes, pos, None

    def evaluate(expr: str, dot: dict):
        words = shlex.split(expr)
        args = [dot[w[1:]] if w.startswith(".") else w for w in words[1:]] if len(words) > 1 else []
        if words[0] in ("eq", "ne"):
            return (args[0] == args[1]) == (words[0] == "eq")
        return dot[words[0][1:]]

    def run(nodes: list, dot: dict) -> str:
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "expr":
                out.append(str(evaluate(node[1], dot)))
            elif node[0] == "if":
                out.append(run(node[2] if evaluate(node[1], dot) else node[3], dot))
            else:
                out.extend(run(node[2], item) for item in evaluate(node[1], dot))
        return "".join(out)

    return run(parse(0)[0], values)


def ollama_prompt(template: str, messages: list[dict]) -> str:
    """What Ollama renders for a chat: .System joins the system messages, .Messages are all of them."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return render_go(
        template, {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    )


def read_modelfile(path: Path) -> dict:
    text = path.read_text()
    blocks = dict(re.findall(r'^(TEMPLATE|SYSTEM|LICENSE) """(.*?)"""', text, flags=re.S | re.M))
    blocks["FROM"] = re.search(r"^FROM (.+)$", text, flags=re.M)[1]
    blocks["PARAMETER"] = re.findall(r"^PARAMETER (\w+) (.+)$", text, flags=re.M)
    return blocks


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merged_model_equals_peft_model(tiny_export, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from medllm.models import load_model

    config, summary, out = tiny_export
    ids = torch.tensor([[1, 520, 3000, 42, 2]])
    with torch.inference_mode():
        peft = load_model(config.model, Path(summary["adapter"]))(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32)(ids).logits
        base = load_model(config.model)(ids).logits
    assert torch.allclose(merged, peft, atol=1e-5)
    assert (merged - base).abs().max() > 0.01  # the adapter really changed the model


def test_modelfile_template_renders_like_chat_template(tiny_export, tiny_llama_dir):
    from transformers import AutoTokenizer

    _config, _summary, out = tiny_export
    modelfile = read_modelfile(out / "Modelfile")
    assert modelfile["FROM"] == "./tiny-dx-F16.gguf" and (out / modelfile["FROM"]).is_file()
    assert SYSTEM_PROMPT in modelfile["SYSTEM"] and DISCLAIMER in modelfile["SYSTEM"]
    assert modelfile["LICENSE"].startswith("apache-2.0")
    assert modelfile["PARAMETER"] == [
        ("stop", '"<|im_start|>"'),
        ("stop", '"<|im_end|>"'),
        ("temperature", "0.0"),
        ("top_p", "0.9"),
        ("num_ctx", "2048"),
        ("num_predict", "256"),
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    for messages in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ollama_prompt(modelfile["TEMPLATE"], messages) == expected


def test_ollama_layout(tiny_export):
    config, summary, out = tiny_export
    models = out / "ollama"
    _, manifest = read_layout(models, config.export.ollama_model)
    blobs = {d["digest"]: blob_path(models, d["digest"]) for d in [manifest["config"], *manifest["layers"]]}
    assert (models / "manifests" / OLLAMA_REGISTRY_HOST / "medllm" / "tiny-dx" / "0.1").is_file()
    assert summary["ollama"]["manifest"] == f"ollama/manifests/{OLLAMA_REGISTRY_HOST}/medllm/tiny-dx/0.1"
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    for descriptor in [manifest["config"], *manifest["layers"]]:
        path = blobs[descriptor["digest"]]
        assert path.name == descriptor["digest"].replace(":", "-")
        assert descriptor["digest"] == f"sha256:{sha256(path)}" and descriptor["size"] == path.stat().st_size
    kinds = {d["mediaType"].rsplit(".", 1)[1]: blobs[d["digest"]] for d in manifest["layers"]}
    assert list(kinds) == ["model", "template", "system", "license", "params"]
    modelfile = read_modelfile(out / "Modelfile")
    assert sha256(kinds["model"]) == sha256(out / "tiny-dx-F16.gguf")
    assert kinds["template"].read_text() == modelfile["TEMPLATE"]
    assert kinds["system"].read_text() == modelfile["SYSTEM"]
    assert kinds["license"].read_text() == modelfile["LICENSE"]
    assert json.loads(kinds["params"].read_text()) == {
        "stop": ["<|im_start|>", "<|im_end|>"],
        "temperature": 0.0,
        "top_p": 0.9,
        "num_ctx": 2048,
        "num_predict": 256,
    }
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    blob_config = json.loads(blobs[manifest["config"]["digest"]].read_text())
    assert blob_config["model_format"] == "gguf" and blob_config["model_families"] == ["llama"]
    assert blob_config["file_type"] == "F16" and re.fullmatch(r"[\d.]+M", blob_config["model_type"])
    assert blob_config["rootfs"]["diff_ids"] == [d["digest"] for d in manifest["layers"]]


def test_chat_family_needs_a_known_template():
    with pytest.raises(MedllmError, match="neither ChatML"):
        chat_family("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert chat_family(LLAMA2_TEMPLATE) == "llama2"


def test_missing_adapter_and_cli(tmp_path, tiny_llama_dir, capsys):
    from medllm.cli import main

    config = small_config(tmp_path, str(tiny_llama_dir))
    with pytest.raises(MedllmError, match=f"no LoRA adapter at {config.output_dir / 'adapter'}"):
        export(config)
    with pytest.raises(MedllmError, match="exclude each other"):
        export(config, adapter=tmp_path, base_only=True)
    assert main(["export", "--output_dir", str(tmp_path / "run"), "--model.name", str(tiny_llama_dir)]) == 2
    assert "--base-model" in capsys.readouterr().err
    assert not (tmp_path / "run" / "export").exists()


@pytest.fixture(scope="session")
def tiny_llama2_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a small SentencePiece BPE tokenizer and Llama-2's chat template, untied."""
    import sentencepiece
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    out = tmp_path_factory.mktemp("tiny-llama2")
    text = [
        SYSTEM_PROMPT,
        "Patient: 34-year-old woman with fever, rash and joint pain for 3 days.",
        "Candidate diagnoses (in no particular order): Lyme disease, rheumatic fever, lupus.",
        "Rank the 5 most likely, then give a one-line rationale.",
    ] * 20
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_prefix=str(out / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    tokenizer = LlamaTokenizer.from_pretrained(out, add_bos_token=True)
    tokenizer.chat_template = LLAMA2_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)  # keeps tokenizer.model from training, as a hub download has it
    return out


def test_sentencepiece_llama2_export(tmp_path, tiny_llama2_dir):
    from transformers import AutoTokenizer

    config = small_config(
        tmp_path,
        str(tiny_llama2_dir),
        **{"export.gguf_types": ["f32"], "export.license": "llama2", "export.ollama_model": "alice/llama2-dx"},
    )
    summary = export(config, base_only=True)
    out = config.output_dir / "export"
    assert summary["adapter"] is None and summary["chat_family"] == "llama2"
    check = summary["gguf"]["f32"]["check"]
    assert check["tokens_equal"] and check["max_abs_logit_diff"] <= TOLERANCE["f32"] * check["max_abs_logit"]
    # llama.cpp writes a space after <s> ("▁[" for "[INST]"); this legacy=False tokenizer does not: recorded
    in_llamacpp = check["llamacpp"]
    assert not in_llamacpp["tokens_equal"] and "llama.cpp [1, 1, " in in_llamacpp["token_difference"]
    assert in_llamacpp["relative"] <= LLAMACPP_TOLERANCE["f32"] and in_llamacpp["greedy_equal"] == 1
    reader = gguf.GGUFReader(out / "llama2-dx-F32.gguf")
    assert "output.weight" in {t.name for t in reader.tensors}  # untied
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is True
    assert len(reader.fields["tokenizer.ggml.scores"].data) == 400
    modelfile = read_modelfile(out / "Modelfile")
    assert ("stop", '"[INST]"') in modelfile["PARAMETER"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    for messages in [*CONVERSATIONS, CONVERSATIONS[1][1:]]:  # the last one without a system message
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # Ollama's tokenizer adds the BOS the Hugging Face template writes as text
        assert tokenizer.bos_token + ollama_prompt(modelfile["TEMPLATE"], messages) == expected
    assert "Intended use" in (out / "README.md").read_text()


def update_error(merged, base, exact) -> tuple[float, float]:
    """Relative error of the LoRA update ``merged - base`` against ``exact - base`` over the updated weights,
    and the fraction of updated entries that ``merged`` left at the base value."""
    names = [n for n, w in exact.items() if w.ndim == 2 and not torch.equal(w, base[n])]
    true = torch.cat([(exact[n] - base[n]).flatten() for n in names])
    got = torch.cat([(merged[n].double() - base[n]).flatten() for n in names])
    unchanged = torch.cat([(merged[n].double() == base[n]).flatten() for n in names])
    return ((got - true).norm() / true.norm()).item(), unchanged[true != 0].double().mean().item()


def test_export_merges_in_float32_whatever_model_dtype(tmp_path, tiny_llama2_dir, make_random_adapter):
    """A trained-size LoRA update (0.3% of the weights' RMS) is below bf16's resolution: merged into the
    model as loaded with model.dtype bfloat16, much of it rounds back to the base weights. The export
    merges in float32 and checks merged/ and the GGUF against the base with its unmerged adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = tmp_path / "base"  # a bf16 checkpoint, as real bases ship: exact in bf16 and in float32
    shutil.copytree(tiny_llama2_dir, base_dir)
    AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16).save_pretrained(base_dir)
    adapter = make_random_adapter(base_dir, tmp_path / "adapter", relative=0.003)

    def merged_in(dtype):
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
        return PeftModel.from_pretrained(model, adapter).merge_and_unload().state_dict()

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float64).state_dict()
    exact = merged_in(torch.float64)
    error, unchanged = update_error(merged_in(torch.bfloat16), base, exact)
    assert error > 0.3 and unchanged > 0.2  # the old way: merged in the loaded bf16

    overrides = {"export.gguf_types": ["f32"], "export.license": "llama2", "export.ollama_model": "a/dx"}
    config = small_config(tmp_path, str(base_dir), **{"model.dtype": "bfloat16", **overrides})
    summary = export(config, adapter=adapter)
    out = config.output_dir / "export"
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    assert merged.dtype == torch.float32 and summary["merged"]["dtype"] == "float32"
    error, unchanged = update_error(merged.state_dict(), base, exact)
    assert error < 1e-4 and unchanged < 0.01
    for check in (summary["merged"]["check"], summary["gguf"]["f32"]["check"]):
        assert check["relative"] <= TOLERANCE["f32"] and check["top1_agreement"] == check["greedy_equal"] == 1
    assert "`merged/` (safetensors, float32)" in (out / "README.md").read_text()


@pytest.mark.integration
def test_export_embedded_smollm2(tmp_path, make_random_adapter):
    from medllm.models import resolve_model_path

    config = small_config(tmp_path, "smollm2-135m-instruct", **{"export.gguf_types": ["f16"]})
    adapter = make_random_adapter(Path(resolve_model_path(config.model)), tmp_path / "adapter", std=0.02)
    summary = export(config, adapter=adapter)
    check = summary["gguf"]["f16"]["check"]
    assert check["tokens_equal"] and check["relative"] <= TOLERANCE["f16"] and check["conversion_max_abs_diff"] == 0
    in_llamacpp = check["llamacpp"]
    assert in_llamacpp["tokens_equal"] and in_llamacpp["relative"] <= LLAMACPP_TOLERANCE["f16"]
    assert in_llamacpp["top1_agreement"] > 0.9, in_llamacpp
    out = config.output_dir / "export"
    assert read_modelfile(out / "Modelfile")["LICENSE"].startswith("apache-2.0")
    _, manifest = read_layout(out / "ollama", config.export.ollama_model)
    config_blob = json.loads((out / "ollama" / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_text())
    assert (config_blob["model_type"], config_blob["file_type"]) == ("134.52M", "F16")
    shutil.rmtree(out)
