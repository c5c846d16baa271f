"""Re-rank training rows: the served prompt, the true disease always among the K, published cases split by disease."""

import random

import pytest

from medllm.config import PhenotypeConfig, SimulationConfig, SourceSpec
from medllm.data.phenopackets import PhenopacketCase, dev_halves, load_phenopackets, split_by_disease
from medllm.data.rerank import RERANK, RerankBuilder, phenopacket_records, simulate_terms
from medllm.data.sources import LoadStats
from medllm.errors import MedllmError
from medllm.phenotype.explain import Explainer
from medllm.phenotype.rank import id_positions, load_ranker
from medllm.phenotype.rerank import shown_order
from medllm.prompts import rerank_answer

A, A1, A2, B, B1 = "HP:0000002", "HP:0000003", "HP:0000004", "HP:0000005", "HP:0000006"


def builder(kb, top_k=2) -> RerankBuilder:
    ranker = load_ranker(PhenotypeConfig(prefixes=["OMIM:"], ranker="lirical", prior_weight=0.0), kb)
    return RerankBuilder(ranker, Explainer(kb), id_positions(ranker), top_k, seed=0, use_excluded=True)


def case(disease: str, observed, excluded=(), key="c1") -> PhenopacketCase:
    return PhenopacketCase(key, "cohort", tuple(observed), tuple(excluded), "female", 5.0, None, (disease,), "", "")


def test_a_row_is_the_served_prompt_with_the_true_disease_among_the_k_even_when_ranked_below(tiny_kb):
    rerank = builder(tiny_kb, top_k=2)
    # A2 and B1 excluded: Disease two (A2 0.9, NOT B1) ranks last of the three, outside the top 2
    row = rerank.row(case("OMIM:2", [A1, B1], [A2]), "k", "hpo", "train", "MIT")
    assert row["task"] == RERANK and row["split"] == "train" and row["group"] == "OMIM:2"
    assert row["reference"].startswith(rerank_answer("Disease two")) and "Rationale:" in row["reference"]
    assert "OMIM:2" in row["case"]["retrieved"] and len(row["case"]["retrieved"]) == 2
    prompt = row["messages"][1]["content"]
    assert "Disease two: " in prompt and "excluded: A2" in prompt
    # shown in the per-case order, not the ranking's
    order = shown_order(row["case"]["vignette"], 2, 0)
    names = {"OMIM:1": "Disease one", "OMIM:2": "Disease two", "OMIM:3": "Disease three"}
    assert row["case"]["candidates"] == [names[row["case"]["retrieved"][i]] for i in order]


def test_a_case_whose_disease_is_not_ranked_gives_no_row(tiny_kb):
    assert builder(tiny_kb).row(case("OMIM:404", [A1]), "k", "hpo", "train", "") is None
    assert builder(tiny_kb).row(case("ORPHA:9", [A1]), "k", "hpo", "train", "") is None  # not an OMIM: row


def test_simulated_cases_draw_the_diseases_findings_and_are_seeded(tiny_kb):
    row = int(tiny_kb.id_rows()["OMIM:1"])
    cfg = SimulationConfig(findings=(2, 2), extra_findings=(0, 0), excluded_findings=(0, 0), ancestor_prob=0.0)
    cases = [simulate_terms(tiny_kb, row, cfg, random.Random(seed), "k") for seed in range(5)]
    assert all(set(c.observed) == {A1, B1} and not c.excluded for c in cases)  # both of its findings
    assert cases[0].disease_ids[0] == "OMIM:1" and cases[0].sex in ("female", "male")
    noisy = SimulationConfig(findings=(1, 2), extra_findings=(1, 1), excluded_findings=(1, 2), ancestor_prob=1.0)
    first, again = (simulate_terms(tiny_kb, row, noisy, random.Random(7), "k") for _ in range(2))
    assert first == again
    for seed in range(20):
        c = simulate_terms(tiny_kb, row, noisy, random.Random(seed), "k")
        assert not set(c.observed) & set(c.excluded)
        assert A in c.observed or B in c.observed  # made one step less specific: A1 -> A, B1 -> B


def test_published_cases_train_only_on_the_dev_parts_training_half(tiny_kb, phenopacket_store):
    folder, archive = phenopacket_store
    for path in (folder, archive):
        stats = LoadStats()
        rows = list(phenopacket_records(SourceSpec(source="phenopackets", path=path), builder(tiny_kb), stats))
        cases = load_phenopackets(path).cases
        halves = dev_halves(split_by_disease(cases)["dev"])
        train = {c.disease_ids[0] for c in halves["train"]}
        fit = {c.disease_ids[0] for c in halves["fit"]}
        assert train and fit and not train & fit
        assert rows and {r["case"]["disease_id"] for r in rows} <= train
        assert all(r["split"] == "train" and r["source"] == "phenopackets" for r in rows)
        assert stats.read == len(cases) and stats.yielded == len(rows) and stats.filtered == len(cases) - len(rows)


def test_malformed_phenopackets_are_skipped_and_counted_until_too_many(tiny_kb, phenopacket_store):
    folder, _ = phenopacket_store
    (folder / "OMIM_1" / "broken.json").write_text("{not json")
    spec = SourceSpec(source="phenopackets", path=folder, max_bad_fraction=0.2)
    stats = LoadStats()
    list(phenopacket_records(spec, builder(tiny_kb), stats))
    assert stats.bad == 1 and stats.bad_locations == ["OMIM_1/broken.json"]
    strict = SourceSpec(source="phenopackets", path=folder, max_bad_fraction=0.0)
    with pytest.raises(MedllmError, match="1 of 7 phenopackets records"):
        list(phenopacket_records(strict, builder(tiny_kb), LoadStats()))
    with pytest.raises(MedllmError, match="does not exist"):
        list(phenopacket_records(SourceSpec(source="phenopackets", path=folder / "nope"), builder(tiny_kb), stats))
