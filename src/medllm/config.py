"""Recipe configuration: one YAML file per recipe, validated by pydantic.

The recipes ship with the package (``medllm/recipes/``), every field
documented there; ``--config`` takes a recipe's name or a YAML path, and any
field can be overridden on the command line as ``--section.field value``.
"""

from __future__ import annotations

import math
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medllm.errors import MedllmError
from medllm.io import atomic_write_text
from medllm.run import RunDir

RECIPES = Path(str(files("medllm") / "recipes"))
DEFAULT_RECIPE = "smollm2-135m-lora"
DEFAULT_API_PORT = 8000
DEFAULT_API_URL = f"http://127.0.0.1:{DEFAULT_API_PORT}"
DEFAULT_UI_PORT = 8501
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
OLLAMA_REGISTRY_HOST = "registry.ollama.ai"  # also the first folder of an Ollama model's manifest path
DEFAULT_REGISTRY = f"https://{OLLAMA_REGISTRY_HOST}"
SPLITS = ("train", "validation", "test")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = "smollm2-135m-instruct"
    revision: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    cache_dir: Path = Path("~/.cache/medllm")


class SourceSpec(_Section):
    source: str
    path: Path | None = None
    max_bad_fraction: float = Field(0.05, ge=0, le=1)
    patients: int = Field(100, ge=1)
    seed: int = 0
    max_records: int | None = Field(None, ge=1)


class MixtureSpec(_Section):
    """One source's share: ``cap`` bounds its records over all splits, ``weight`` its share of training."""

    cap: int | None = Field(None, ge=0, strict=True)
    weight: float | None = Field(None, ge=0, strict=True)


class CurationConfig(_Section):
    """The knobs of :func:`medllm.data.curate.pipeline.curate` (documented in the recipes)."""

    normalize: bool = True
    scrub: bool = True
    min_tokens: int = Field(16, ge=0)
    max_tokens: int = Field(4096, ge=0)
    length_batch_size: int = Field(256, ge=1)
    near_threshold: float | None = Field(0.8, gt=0, le=1)  # None: exact dedupe only
    num_perm: int = Field(128, ge=2)
    shingle_words: int = Field(5, ge=1)
    decontam_ngram: int = Field(8, ge=1)
    decontam_max_groups: int = Field(10, ge=1)
    decontaminate_test_split: bool = True
    fractions: dict[str, float] = {"train": 0.9, "validation": 0.05, "test": 0.05}
    split_seed: str = "medllm"
    mixture: dict[str, MixtureSpec] = {}
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> CurationConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"need min_tokens <= max_tokens (got {self.min_tokens}, {self.max_tokens})")
        check_fractions(self.fractions)
        return self


def check_fractions(fractions: dict[str, float]) -> None:
    """Split shares: keys among the splits, each >= 0, summing to 1."""
    unknown = set(fractions) - set(SPLITS)
    if (
        unknown
        or not fractions
        or any(f < 0 for f in fractions.values())
        or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(f"fractions must map {'/'.join(SPLITS)} to shares >= 0 summing to 1 (got {dict(fractions)})")


class SimulationConfig(_Section):
    """How the simulated cases are drawn from the disease profiles."""

    cases_per_disease: dict[Literal["train", "validation", "test"], int] = {"train": 3, "validation": 1, "test": 1}
    seeds: dict[Literal["disease_sample", "train", "validation", "test"], int] = {
        "disease_sample": 0,
        "train": 1,
        "validation": 2,
        "test": 3,
    }
    findings: tuple[int, int] = (4, 7)
    ancestor_prob: float = Field(0.5, ge=0, le=1)
    extra_findings: tuple[int, int] = (1, 2)
    excluded_findings: tuple[int, int] = (0, 3)  # re-rank cases: findings checked and found absent
    lay_synonym_prob: float = Field(0.3, ge=0, le=1)


class DataConfig(_Section):
    dir: Path | None = None
    hpo_diseases: int = Field(200, ge=0)
    hpo_min_phenotypes: int = Field(8, ge=3)
    common_diseases: bool = True
    # what the simulated cases are written as: differential (retrieved candidates, a ranked list) and/or
    # rerank (the phenotype ranking's top K with their evidence, the true disease as the answer)
    tasks: list[Literal["differential", "rerank"]] = Field(["differential"], min_length=1)
    simulation: SimulationConfig = SimulationConfig()
    preview_rows: int = Field(20, ge=0)
    sources: list[SourceSpec] = []
    curation: CurationConfig = CurationConfig()


class RetrievalConfig(_Section):
    """Candidate retrieval over the disease profiles (and an optional case corpus)."""

    method: Literal["bm25", "dense", "hybrid"] = "hybrid"
    rrf_k: int = Field(10, ge=1)
    case_corpus: Path | None = None


class PhenotypeConfig(_Section):
    """The phenotype ranking of every HPO-annotated disease from a case's HPO findings (:mod:`medllm.phenotype`)."""

    ranker: Literal["lirical", "phenomizer"] = "phenomizer"
    phenomizer_mode: Literal["query", "funsimavg"] = "query"
    # Phenomizer corrections (medllm.phenotype.phenomizer.PhenomizerParams), chosen on the phenopacket dev part
    # by benchmarks/phenopacket_ranking.py; all 0 is the plain Resnik score.
    phenomizer_frequency_weight: float = Field(0.2, ge=0, le=1)
    phenomizer_size_penalty: float = Field(0.2, ge=0)
    excluded_match_gain: float = Field(0.3, ge=0)  # an excluded finding the disease is annotated NOT to
    excluded_penalty: float = Field(0.0, ge=0)  # an excluded finding the disease has (Phenomizer)
    # the disease-to-case match (query mode) and the fraction of the case's terms the disease has exactly or
    # more specifically: fitted on the phenopacket dev part by benchmarks/phenotype_weights.py
    phenomizer_reverse_weight: float = Field(0.4, ge=0)
    phenomizer_exact_weight: float = Field(3.3, ge=0)
    use_excluded: bool = True  # excluded findings count as absent (both rankers)
    prefixes: list[Literal["OMIM:", "ORPHA:", "ICD10:"]] = ["OMIM:", "ORPHA:", "ICD10:"]
    # Pretest prior (medllm.phenotype.pretest): weight × (log prevalence class − age / sex mismatch) / the number
    # of observed findings is added to the score; weight chosen on the phenopacket dev part and the tuning
    # vignettes (benchmarks/common_vignettes.py).
    prior_weight: float = Field(0.6, ge=0)
    prior_age_mismatch: float = Field(4.6, ge=0)  # nats lost outside the disease's ages (ln 100)
    prior_sex_mismatch: float = Field(13.8, ge=0)  # nats lost for a disease limited to the other sex (ln 1e6)
    # best score under which a differential is flagged as not fitting: fitted on the phenopacket dev part by
    # benchmarks/phenotype_calibration.py (Youden's J for "the diagnosis is not in the top 10"); None turns it off
    low_confidence_below: float | None = 5.65
    # softmax temperature turning the ranker's scores into the differential's confidences: fitted on the
    # phenopacket dev part by benchmarks/phenotype_calibration.py (log-loss of the top-1 confidence)
    confidence_temperature: float = Field(0.401, gt=0)

    @model_validator(mode="after")
    def _reverse_weight_needs_query_mode(self) -> PhenotypeConfig:
        if self.phenomizer_mode == "funsimavg" and self.phenomizer_reverse_weight:
            raise ValueError(
                "phenomizer_reverse_weight must be 0 with phenomizer_mode funsimavg, which already averages "
                f"both ways (got {self.phenomizer_reverse_weight})"
            )
        return self


class RerankConfig(_Section):
    """The model as a re-ranker of the phenotype ranking's top ``top_k`` (:mod:`medllm.phenotype.rerank`)."""

    top_k: int = Field(10, ge=2)
    seed: int = 0  # of the order the candidates are shown in (per case), so the position does not leak the rank
    # explicit fusion weight and temperature; None: those fitted by `medllm eval` (<run>/rerank.json), if any
    weight: float | None = Field(None, ge=0)
    temperature: float | None = Field(None, gt=0)
    eval: bool = True  # `medllm eval` on phenopackets also scores the re-rankers (needs a loaded model)
    fit_max_cases: int | None = Field(None, ge=1)  # dev cases the weight is fitted on (a seeded sample)


class PromptConfig(_Section):
    """What the model is shown and asked for."""

    num_candidates: int = Field(8, ge=1)
    differential_size: int = Field(5, ge=1)


class LoraConfig(_Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainConfig(_Section):
    max_steps: int = -1
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(512, ge=16)
    bf16: bool = False
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    memory_budget_gb: float | None = Field(None, gt=0)
    packing: bool = False
    group_by_length: bool = True
    torch_compile: bool = False
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = 2
    eval_steps: int = Field(50, ge=1)
    eval_max_samples: int | None = Field(64, ge=1)
    eval_accuracy_samples: int | None = Field(16, ge=1)
    seed: int = 42


class EvalConfig(_Section):
    split: Literal["validation", "test"] = "test"
    max_cases: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(96, ge=1)
    conditions: list[Literal["retrieval", "base_rag", "finetuned_rag", "base_closed_book"]] = [
        "retrieval",
        "base_rag",
        "finetuned_rag",
        "base_closed_book",
    ]
    calibration: bool = True
    safety: bool = True
    safety_max_new_tokens: int = Field(96, ge=1)
    benchmarks: list[Literal["mmlu_medical", "medqa", "medmcqa", "pubmedqa"]] = ["mmlu_medical"]
    benchmark_files: dict[Literal["mmlu_medical", "medqa", "medmcqa", "pubmedqa"], Path] = {}
    benchmark_max_items: int | None = Field(None, ge=1)
    k_shot: int = Field(0, ge=0)
    chat_template: bool = False
    qa_source: Literal["dataset", "ehrdsqa", "healthqa"] | None = None
    qa_file: Path | None = None
    qa_max_items: int | None = Field(200, ge=1)
    qa_max_new_tokens: int = Field(64, ge=1)
    # real published cases (GA4GH phenopackets, a folder or a zip): "packaged" for the sample shipped in the package
    phenopackets: Literal["packaged"] | Path | None = None
    phenopackets_max_cases: int | None = Field(None, ge=1)
    phenopackets_part: Literal["validation", "test", "all"] = "test"  # of split_by_disease (disease-disjoint)


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_API_PORT, ge=1, le=65535)
    backend: Literal["transformers", "llamacpp", "ollama", "openai"] = "transformers"
    gguf: Path | None = None  # backend llamacpp: the GGUF file (None: the q8_0, else f16, of <output_dir>/export)
    n_ctx: int = Field(2048, ge=16)  # backend llamacpp: context window, in tokens
    n_threads: int | None = Field(None, ge=1)  # backend llamacpp: CPU threads (None: llama-cpp-python's default)
    n_parallel: int = Field(1, ge=1)  # backend llamacpp: contexts answering at once (llama-server's --parallel)
    ollama_url: str = DEFAULT_OLLAMA_URL
    ollama_model: str | None = None
    openai_base_url: str | None = None  # backend openai: the server's OpenAI API root, e.g. http://127.0.0.1:8080/v1
    openai_model: str | None = None  # backend openai: the served model's name (None: the first the server lists)
    openai_api_key_env: str | None = "OPENAI_API_KEY"  # backend openai: environment variable holding its key
    similar_cases: int = Field(3, ge=0)
    api_key_env: str | None = "MEDLLM_API_KEY"
    max_new_tokens: int = Field(128, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_request_bytes: int = Field(65536, ge=1024)
    max_pending: int = Field(4, ge=1)
    max_batch: int = Field(4, ge=1)  # transformers backend: concurrent requests generated in one padded batch
    batch_wait_ms: float = Field(10.0, ge=0)  # how long a batch waits for more requests before it runs
    cors_origins: list[str] = []
    audit_log: Path | None = None

    def resolve_api_key(self) -> str | None:
        """The API key from the environment variable ``api_key_env``; None: no key required."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


class ExportConfig(_Section):
    """``medllm export``: GGUF types, the Ollama model name, its license and sampling defaults."""

    gguf_types: list[Literal["f32", "f16", "q8_0"]] = Field(["f16"], min_length=1)
    ollama_model: str = "medllm/smollm2-135m-dx:latest"
    license: str | None = None
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    num_ctx: int = Field(2048, ge=16)
    num_predict: int = Field(256, ge=1)
    verify: bool = True
    # with an adapter: also the base model as a GGUF of the first type and the adapter as a GGUF LoRA
    lora_gguf: bool = True


class Config(_Section):
    output_dir: Path = Path("runs/smollm2-135m-lora")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    prompt: PromptConfig = PromptConfig()
    phenotype: PhenotypeConfig = PhenotypeConfig()
    rerank: RerankConfig = RerankConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    serve: ServeConfig = ServeConfig()
    export: ExportConfig = ExportConfig()

    @property
    def run(self) -> RunDir:
        """The run folder's typed paths."""
        return RunDir(self.output_dir)

    @property
    def data_dir(self) -> Path:
        """The dataset folder: ``data.dir``, or ``<output_dir>/data``."""
        return self.data.dir if self.data.dir is not None else self.run.data


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MedllmError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def _describe(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown config field '{field}'"
    return f"{origin}: config field '{field}': {first['msg']} (got {first.get('input')!r})"


def recipe_path(name: str | Path) -> Path:
    """A YAML path as given, or the packaged recipe of that name (``smollm2-135m-lora``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = RECIPES / f"{path.name.removesuffix('.yaml')}.yaml"
    if packaged.is_file() and path.parent == Path("."):
        return packaged
    known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise MedllmError(f"config file not found: {name} (packaged recipes: {known})")


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """``--a.b value`` / ``--a.b=value`` pairs → {"a.b": "value"}."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise MedllmError(f"unexpected argument {token!r} (overrides look like --train.max_steps 10)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(tokens):
                raise MedllmError(f"override --{key} needs a value")
            value, i = tokens[i + 1], i + 1
        overrides[key] = value
        i += 1
    return overrides


def load_config(path: str | Path | None = None, overrides: dict[str, str] | None = None) -> Config:
    """Read a YAML recipe (a path or a packaged recipe's name), apply ``section.field`` overrides, validate.

    Override values are parsed as YAML scalars, so ``--train.max_steps 10``
    gives an int and ``--eval.max_cases null`` gives None.
    """
    tree: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = recipe_path(path)
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise MedllmError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(tree, dict):
            raise MedllmError(f"{path}: expected a mapping of config sections")
        origin = str(path)
    for key, raw in (overrides or {}).items():
        _set_dotted(tree, key, yaml.safe_load(raw) if isinstance(raw, str) else raw)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise MedllmError(_describe(exc, origin if not overrides else f"{origin} + overrides")) from None


def save_config(config: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
