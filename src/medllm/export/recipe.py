"""``medllm export``: the fine-tuned model as GGUF files, a Modelfile and an Ollama model.

The LoRA adapter is merged into the base weights (PEFT ``merge_and_unload``)
in float32, whatever ``model.dtype`` is: a LoRA update is a small fraction of
a weight, and added in bfloat16 much of it rounds back to the base weight.
``merged/`` keeps the float32 weights as safetensors, and each requested GGUF
type is written from them (:mod:`medllm.export.gguf`). ``merged/`` and every
GGUF are checked against the base model with its adapter unmerged (float32),
and the measured differences go into ``export.json``. With an adapter, the base model is also written as a
GGUF of the first type and the adapter as a GGUF LoRA (:mod:`medllm.export.lora`; ``Modelfile.lora``
applies it with Ollama's ``ADAPTER``), checked in llama.cpp the same way. A Modelfile, Ollama's on-disk model
layout (``blobs/`` + ``manifests/``) and a model card
(:mod:`medllm.export.card`) complete the export. The export folder is built in
a temporary sibling and renamed into place, so a failed check never leaves a
half export behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf

from medllm.config import Config
from medllm.errors import MedllmError
from medllm.export.card import data_sources, model_card
from medllm.export.gguf import TOLERANCE, check_architecture, check_types, reference_outputs, verify_all, write_all
from medllm.export.lora import verify_lora_in_llamacpp, write_lora_pair
from medllm.export.ollama import parse_model_name, write_ollama_layout
from medllm.io import atomic_directory
from medllm.models import EMBEDDED, load_model, load_tokenizer, resolve_model_path
from medllm.prompts import SYSTEM_PROMPT
from medllm.run import require_adapter
from medllm.safety import DISCLAIMER

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


def modelfile(
    gguf_name: str, family: str, system: str, license_text: str, params: dict, adapter: str | None = None
) -> str:
    """The Modelfile ``ollama create`` takes; the Ollama layout holds the same template, system, license, params.
    ``adapter``: a GGUF LoRA applied to ``gguf_name`` (Ollama's ``ADAPTER``)."""
    lines = [f"FROM ./{gguf_name}", *([f"ADAPTER ./{adapter}"] if adapter else [])]
    lines.append(f'TEMPLATE """{OLLAMA_TEMPLATES[family]}"""')
    for key, value in params.items():
        lines += [f'PARAMETER {key} "{v}"' for v in value] if isinstance(value, list) else [f"PARAMETER {key} {value}"]
    lines += [f'SYSTEM """{system}"""', f'LICENSE """{license_text}"""']
    return "\n".join(lines) + "\n"


def parameter_count(model) -> int:
    """Parameters as the GGUF stores them: a tied output head counts once."""
    return sum(
        t.numel()
        for n, t in model.state_dict().items()
        if not (n == "lm_head.weight" and model.config.tie_word_embeddings)
    )


def package_for_ollama(
    folder: Path, config: Config, family: str, license_id: str, ggufs: dict, n_params: int, lora: dict | None
) -> dict:
    """The Modelfile and the Ollama layout for the first GGUF type (and ``Modelfile.lora`` for the base GGUF and
    the GGUF LoRA, when written); return where the manifest is."""
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
    if lora:  # the same model as the base GGUF with the adapter applied at load time
        text = modelfile(lora["base"]["file"], family, system, license_text, params, lora["adapter"]["file"])
        (folder / "Modelfile.lora").write_text(text, encoding="utf-8")
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


def merge_float32(config: Config, adapter: Path | None, tokenizer) -> tuple:
    """The base model with ``adapter`` merged, in float32 whatever ``model.dtype`` is; and the check's reference.

    Merged in bfloat16, an update much smaller than the weight it is added to rounds away. The
    reference (``export.verify``) is computed before merging, from the base with its adapter unmerged.
    """
    model = load_model(config.model.model_copy(update={"dtype": "float32"}), adapter)
    reference = reference_outputs(model, tokenizer) if config.export.verify else None
    return (model.merge_and_unload() if adapter is not None else model), reference


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

    model, reference = merge_float32(config, adapter, tokenizer)
    summary = {
        "model": config.model.name,
        "adapter": str(adapter) if adapter else None,
        "merged": {"folder": "merged", "dtype": "float32", "tolerance_relative": TOLERANCE["f32"]},
        "chat_family": family,
        "ollama_model": cfg.ollama_model,
        "gguf": {},
    }
    with atomic_directory(out_dir) as tmp:
        merged = tmp / "merged"
        model.save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        copy_sentencepiece_model(config, merged)
        summary["merged"]["size"] = sum(f.stat().st_size for f in merged.iterdir())
        n_params = parameter_count(model)
        metadata = gguf.Metadata(
            name=model_name,
            finetune="medllm-lora" if adapter else None,
            size_label=gguf.size_label(n_params, 0, 0, 0),
            license=license_id,
            base_models=[{"name": config.model.name}],
            description="Clinical decision support (differential diagnosis ranking); not medical advice.",
        )
        summary["gguf"] = write_all(model, tokenizer, tmp, merged, model_name, cfg.gguf_types, metadata)
        del model
        if adapter is not None and cfg.lora_gguf:
            summary["lora"] = write_lora_pair(config, adapter, hf_config, tokenizer, tmp, model_name, metadata)
        lora = summary.get("lora")
        if cfg.verify:
            summary["verify_prompts"] = verify_all(tmp, tokenizer, summary["merged"], summary["gguf"], reference)
            if lora:
                base, lora_file = tmp / lora["base"]["file"], tmp / lora["adapter"]["file"]
                lora["check"] = verify_lora_in_llamacpp(base, lora_file, lora["base"]["type"], reference)
        summary["ollama"] = package_for_ollama(tmp, config, family, license_id, summary["gguf"], n_params, lora)
        (tmp / "README.md").write_text(model_card(config, summary, license_id), encoding="utf-8")
        (tmp / "export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
