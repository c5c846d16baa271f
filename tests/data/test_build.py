import json
import random

import pytest

from medllm.config import load_config
from medllm.data.build import build_splits, simulate_case
from medllm.data.dataset import load_index, load_split
from medllm.errors import MedllmError
from medllm.knowledge import load_common_diseases
from medllm.prompts import parse_differential


def test_simulated_case_is_seeded_and_noisy():
    cfg = load_config(None).data.simulation.model_copy(
        update={"extra_findings": (2, 2), "ancestor_prob": 0.0, "lay_synonym_prob": 0.0}
    )
    diseases = load_common_diseases()
    asthma = next(d for d in diseases if d.name == "Asthma")
    first = simulate_case(asthma, diseases, cfg, random.Random(5))
    again = simulate_case(asthma, diseases, cfg, random.Random(5))
    assert first == again
    own = {f.name for f in asthma.findings}
    mentioned = first["vignette"].split(" presents with ")[1].rstrip(".").replace(" and ", ", ").split(", ")
    assert sum(m not in own for m in mentioned) == 2, "two findings the disease does not have"
    assert set(first["true_findings"]) <= own


def test_splits_are_leak_free_and_targets_are_ranked(tiny_dataset):
    simulation = tiny_dataset.data.simulation.model_copy(
        update={"cases_per_disease": {"train": 2, "validation": 1, "test": 1}}
    )
    config = tiny_dataset.model_copy(update={"data": tiny_dataset.data.model_copy(update={"simulation": simulation})})
    index, _ = load_index(tiny_dataset)
    diseases = index.diseases
    splits = build_splits(diseases, config, index)
    train_vignettes = {r["vignette"] for r in splits["train"]}
    assert not train_vignettes & {r["vignette"] for r in splits["test"]}
    for row in splits["train"]:
        ranked = parse_differential(row["completion"][0]["content"])
        assert ranked[0] == row["disease"], "the true disease comes first"
        assert row["disease"] in row["candidates"], "training candidates include the answer"
        assert len(ranked) == min(config.prompt.differential_size, len(row["candidates"]))
    by_id = {d.id: d.name for d in diseases}
    for row in splits["test"]:
        assert sorted(row["candidates"]) == sorted(by_id[i] for i in row["retrieved"]), (
            "test candidates are retrieval's alone"
        )
    assert any(row["candidates"] != [by_id[i] for i in row["retrieved"]] for row in splits["test"]), "shuffled"


def test_build_dataset_writes_splits_and_preview(tiny_dataset):
    data_dir = tiny_dataset.data_dir
    train = load_split(data_dir, "train")
    assert len(train) == 157 and set(train["source"]) == {"common"}
    assert (data_dir / "preview.jsonl").read_text().count("\n") == 20
    assert json.loads((data_dir / "stats.json").read_text())["counts"]["test"]["total"] == 157


def test_brought_sources_are_curated_beside_the_simulated_cases(tmp_path, tiny_llama_dir):
    from conftest import small_config
    from medllm.data.benchmarks import load_benchmark
    from medllm.data.build import build_dataset
    from medllm.data.curate.decontaminate import benchmark_texts

    leaked = benchmark_texts(load_benchmark("mmlu_medical")[:1])[0]
    patients = [
        {
            "patient_id": i,
            "patient_uid": f"{900 + i}-1",
            "PMID": str(900 + i),
            "file_path": "x",
            "title": f"Case report {i}: an unusual presentation of disease number {i}",
            "patient": (
                f"A {30 + i}-year-old woman (call 555-123-45{i:02d}) presented with fever, cough and "
                f"weight loss over {i + 2} weeks; imaging showed finding {i} and biopsy confirmed it."
                + (f" Aside: {leaked}" if i == 0 else "")
            ),
            "age": [[30.0 + i, "year"]],
            "gender": "F",
            "relevant_articles": {},
            "similar_patients": {},
        }
        for i in range(40)
    ]
    patients.append(dict(patients[5], patient_uid="905-2"))  # the same summary twice in one article
    pmc = tmp_path / "PMC-Patients.json"
    pmc.write_text(json.dumps(patients))
    config = small_config(
        tmp_path,
        str(tiny_llama_dir),
        **{
            "data.sources": [{"source": "pmc_patients", "path": str(pmc)}],
            "data.curation": {"fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}, "min_tokens": 8},
        },
    )
    counts = build_dataset(config)
    data_dir = config.data_dir
    splits = {s: load_split(data_dir, s) for s in ("train", "validation", "test")}
    pmc_rows = {s: [r for r in d if r["source"] == "pmc_patients"] for s, d in splits.items()}
    assert sum(len(rows) for rows in pmc_rows.values()) == 39, "40 patients + 1 duplicate - 1 leaking MMLU"
    assert counts["train"]["pmc_patients"] == len(pmc_rows["train"]) > 0
    groups = {s: {r["group"] for r in rows} for s, rows in pmc_rows.items()}
    assert not groups["train"] & (groups["validation"] | groups["test"]), "an article stays in one split"
    assert all(
        "[PHONE]" in r["prompt"][1]["content"] and "555-123" not in r["prompt"][1]["content"]
        for rows in pmc_rows.values()
        for r in rows
    ), "phone numbers scrubbed"
    assert not any(leaked[:40] in r["prompt"][1]["content"] for rows in pmc_rows.values() for r in rows)
    simulated = [r for r in splits["test"] if r["task"] == "differential"]
    assert len(simulated) == 157 and all(r["candidates"] for r in simulated), "the simulated cases keep their fields"
    card = json.loads((data_dir / "data_card.json").read_text())
    assert set(card["sources"]) == {"common", "pmc_patients"}
    assert card["report"]["steps"]["dedupe"]["dropped"]["exact_duplicate"]["pmc_patients"] == 1
    assert card["report"]["decontamination"]["dropped"]["mmlu_medical"]["pmc_patients"] == 1
    assert "CC BY-NC-SA 4.0" in (data_dir / "data_card.md").read_text()
    assert (data_dir / "token_lengths.png").read_bytes().startswith(b"\x89PNG")

    from medllm.eval.run import evaluate  # the diagnosis evaluation only sees the simulated cases

    only_retrieval = config.model_copy(
        update={
            "eval": config.eval.model_copy(
                update={"conditions": ["retrieval"], "benchmarks": [], "safety": False, "max_cases": None}
            )
        }
    )
    assert evaluate(only_retrieval)["n"] == 157


def test_offline_clinosim_records_join_the_dataset(tmp_path, tiny_llama_dir):
    from conftest import small_config
    from medllm.data.build import build_dataset

    config = small_config(
        tmp_path,
        str(tiny_llama_dir),
        **{
            "data.sources": [{"source": "clinosim", "patients": 40, "seed": 1}],
            "data.curation": {"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        },
    )
    build_dataset(config)
    rows = [
        r
        for s in ("train", "validation", "test")
        for r in load_split(config.data_dir, s)
        if r["source"].startswith("clinosim")
    ]
    assert rows and {r["task"] for r in rows} <= {"diagnosis", "qa"}
    card = (config.data_dir / "data_card.md").read_text()
    assert "clinosim" in card and "MIT" in card

    from medllm.eval.qa import evaluate_qa
    from medllm.models import load_model, load_tokenizer

    config = config.model_copy(
        update={"eval": config.eval.model_copy(update={"qa_source": "dataset", "qa_max_new_tokens": 4})}
    )
    result, answers = evaluate_qa(load_model(config.model), load_tokenizer(config.model), config, ["base"])
    test_qa = [r for r in load_split(config.data_dir, "test") if r["task"] == "qa"]
    assert result["n"] == len(answers) == min(len(test_qa), config.eval.qa_max_items) > 0
    assert {a["reference"] for a in answers} <= {r["completion"][0]["content"] for r in test_qa}
    with pytest.raises(MedllmError, match="'pmc_patients' needs a path"):
        build_dataset(
            small_config(tmp_path / "x", str(tiny_llama_dir), **{"data.sources": [{"source": "pmc_patients"}]})
        )


def test_max_records_bounds_what_a_brought_source_yields(tmp_path):
    from medllm.config import DataConfig
    from medllm.data.build import source_records

    patients = [
        {
            "patient_id": i,
            "patient_uid": f"{i}-1",
            "PMID": str(i),
            "file_path": "x",
            "title": f"Case {i}",
            "patient": f"A patient {i} with fever.",
            "age": [[40.0, "year"]],
            "gender": "M",
            "relevant_articles": {},
            "similar_patients": {},
        }
        for i in range(300)
    ]
    pmc = tmp_path / "PMC-Patients.json"
    pmc.write_text(json.dumps(patients))
    cfg = DataConfig(sources=[{"source": "pmc_patients", "path": pmc, "max_records": 25, "seed": 1}])
    stats = {}
    records = list(source_records(cfg, stats))
    assert len(records) == 25 and stats["pmc_patients"].read == 300, "the whole file read, a sample of 25 kept"
    unbounded = DataConfig(sources=[{"source": "pmc_patients", "path": pmc}])
    assert len(list(source_records(unbounded, {}))) == 300


@pytest.mark.slow
def test_rerank_rows_train_on_the_whole_base_and_never_on_the_cases_the_fusion_is_fitted_on(tmp_path, tiny_llama_dir):
    from conftest import small_config
    from medllm.data.build import build_dataset
    from medllm.eval.phenopackets import phenopackets_path
    from medllm.eval.rerank import fitting_cases

    packaged = phenopackets_path("packaged")
    config = small_config(
        tmp_path,
        str(tiny_llama_dir),
        **{
            "data.tasks": ["rerank"],
            "data.sources": [{"source": "phenopackets", "path": str(packaged)}],
            "eval.phenopackets": str(packaged),
            "rerank.fit_max_cases": None,
        },
    )
    build_dataset(config)
    train, validation, test = (load_split(config.data_dir, s) for s in ("train", "validation", "test"))
    assert set(train["task"]) == {"rerank"} and {"hpo", "common", "phenopackets"} >= set(train["source"])
    assert {"common", "phenopackets"} <= set(train["source"])
    assert set(validation["task"]) == {"differential", "rerank"} and set(test["task"]) == {"differential"}
    trained = {r["disease_id"] for r in train if r["source"] == "phenopackets"}
    fitted = {d for c in fitting_cases(config) for d in c.disease_ids}
    assert trained and fitted and not trained & fitted
    for row in train.select(range(3)):  # candidates drawn from the whole base (ORPHA/OMIM rows, not only common)
        assert row["disease_id"] in row["retrieved"] and len(row["retrieved"]) == config.rerank.top_k
        assert "Candidate diagnoses with the evidence" in row["prompt"][1]["content"]
    assert any(d.startswith(("OMIM:", "ORPHA:")) for r in train for d in r["retrieved"])
