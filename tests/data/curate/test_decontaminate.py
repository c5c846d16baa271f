"""Decontamination: an 8-gram shared with an evaluation text drops a training record, template text does not."""

from __future__ import annotations

from data.curate.records import QUESTION, record, text
from medllm.data.curate.decontaminate import benchmark_texts, build_eval_index, decontaminate
from medllm.data.curate.tally import Tally
from medllm.data.curate.text import prompt_text


def test_decontaminate_drops_an_8gram_overlap_and_keeps_a_5_word_one():
    index = build_eval_index({"mmlu_medical": [QUESTION]}, n=8)
    records = [
        record(
            "pmc_patients",
            "leak",
            "a",
            f"{text(3, 20)} enzymes is most specific for acute damage to the myocardium {text(4, 20)}",
        ),
        record("pmc_patients", "five", "b", f"{text(5, 20)} most specific for acute damage {text(6, 20)}"),
        record("pmc_patients", "ref", "c", "Case", f"the answer: {QUESTION.lower()}?"),
    ]  # in the reference
    tally = Tally()
    kept = decontaminate(records, index, tally)
    assert [r["id"] for r in kept] == ["pmc_patients:five"]
    assert tally.dropped["mmlu_medical"] == {"pmc_patients": 2}
    assert tally.examples[0]["id"] == "pmc_patients:leak"
    assert tally.examples[0]["ngram"] == "enzymes is most specific for acute damage to"


def test_decontaminate_ignores_ngrams_common_to_many_groups():
    template = "Summarise the key findings and the most likely diagnosis of this patient"
    index = build_eval_index({"test_split": [f"{text(7, 30)} {template}"]}, n=8)
    records = [record("pmc_patients", str(i), f"g{i}", f"{text(100 + i, 30)} {template}") for i in range(12)]
    tally = Tally()
    assert len(decontaminate(records, index, tally, max_groups=10)) == 12  # 1 + 12 groups share the template
    assert tally.counts["common_ngrams_ignored"]["all"] > 0
    assert len(decontaminate(records[:3], index, max_groups=10)) == 0  # 1 + 3 groups: could be a leak


def test_decontaminate_ngrams_do_not_span_the_template_line():
    # Both prompts end in our template line and both references start "Acute myocarditis": 8-grams across
    # the line break ("... most likely diagnosis acute myocarditis") are shared, yet no source text is.
    template = "Summarise the key findings and the most likely diagnosis."
    test = record(
        "pmc_patients", "t", "t", f"Patient summary:\n{text(7, 30)}\n\n{template}", "Acute myocarditis in a child"
    )
    train = record(
        "pmc_patients", "x", "x", f"Patient summary:\n{text(8, 30)}\n\n{template}", "Acute myocarditis after a vaccine"
    )
    others = [
        record("pmc_patients", f"o{i}", f"o{i}", f"Patient summary:\n{text(20 + i, 30)}\n\n{template}", f"Case {i}")
        for i in range(11)
    ]  # the template line alone is in more than 10 groups
    test_text = prompt_text(test) + "\n" + test["reference"]
    flat = record("pmc_patients", "x", "x", (prompt_text(train) + " " + train["reference"]).replace("\n", " "), "")
    assert (
        decontaminate([flat, *others], build_eval_index({"test_split": [test_text.replace("\n", " ")]}, n=8)) == others
    )
    assert decontaminate([train, *others], build_eval_index({"test_split": [test_text]}, n=8)) == [train, *others]


def test_benchmark_texts_and_short_texts_counted():
    items = [{"question": "The genome is:", "choices": ["all DNA of a cell", "a gene", "RNA", "a protein"]}]
    texts = benchmark_texts(items)
    assert texts == ["The genome is: all DNA of a cell a gene RNA a protein"]
    index = build_eval_index({"mmlu": [*texts, "too short to index"]}, n=8)
    assert index.stats["mmlu"] == {"texts": 2, "units": 1, "too_short": 1}
