"""Curation steps: each tested on records that would pass wrongly without it, then the recipe and the card."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from medllm.data.curate.pipeline import (
    CurateConfig,
    Tally,
    _prompt,
    benchmark_texts,
    build_eval_index,
    cap_sources,
    curate,
    decontaminate,
    dedupe,
    group_split,
    length_filter,
    normalize,
    normalize_records,
    scrub,
    scrub_records,
    split_of,
    token_lengths,
    weight_sources,
    write_data_card,
)
from medllm.data.sources import SOURCES, SYSTEM_PROMPTS, LoadStats, SourceInfo
from medllm.errors import MedllmError

SYLLABLES = ["ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zo", "ba", "de", "fu", "gi", "ho"]
VOCAB = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES[:4]]  # 900 invented words


def text(seed: int, n: int = 60) -> str:
    """``n`` invented words; two seeds share almost no 5-gram."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def record(source: str, key: str, group: str, prompt: str, reference: str = "the answer") -> dict:
    info = SOURCES[source]
    return {
        "source": source,
        "id": f"{source}:{key}",
        "group": group,
        "task": info.task,
        "messages": [{"role": "system", "content": SYSTEM_PROMPTS[info.task]}, {"role": "user", "content": prompt}],
        "reference": reference,
        "license": info.license,
        "meta": {},
    }


def user(r: dict) -> str:
    return r["messages"][1]["content"]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


# ----------------------------------------------------------------------------- normalize


def test_normalize_nfkc_whitespace_and_lines():
    raw = "  ﬁbrosis\u00a0at\tthe   base\u200b,\r\nＦＥＶ１ ８０%  \n\n\n\nnext line  "
    r = record("healthqa", "1", "g", raw, " a\t b ")
    out = normalize(r)
    assert user(out) == "fibrosis at the base,\nFEV1 80%\n\nnext line"
    assert out["reference"] == "a b"
    assert out["messages"][0] == r["messages"][0] and user(r).startswith("  ﬁ")  # system kept, input not mutated


def test_normalize_records_drops_what_becomes_empty():
    tally = Tally()
    kept = list(
        normalize_records([record("healthqa", "1", "g", "q", "\u200b "), record("healthqa", "2", "g", "q")], tally)
    )
    assert [r["id"] for r in kept] == ["healthqa:2"]
    assert tally.dropped["empty"] == {"healthqa": 1} and tally.seen["healthqa"] == 2


# ----------------------------------------------------------------------------- scrub


@pytest.mark.parametrize(
    "raw, kind, expected",
    [
        ("Write to jane.doe+ward@mercy-hospital.org today.", "email", "Write to [EMAIL] today."),
        ("Call (555) 123-4567 or 555.123.4567.", "phone", "Call [PHONE] or [PHONE]."),
        ("Daughter: +44 20 7946 0958, office +1 617-555-0101 ext. 12", "phone", "Daughter: [PHONE], office [PHONE]"),
        ("Tel: 5551234567, fax 020 7946 0958", "phone", "Tel: [PHONE], fax [PHONE]"),
        ("MRN: 1234567; MRN 12345678; Acct #: 00987654", "id", "MRN: [ID]; MRN [ID]; Acct #: [ID]"),
        (
            "His medical record number is 76543210, SSN 123-45-6789.",
            "id",
            "His medical record number is [ID], SSN [ID].",
        ),
        ("Seen 03/14/2021 and 2021-03-14.", "date", "Seen [DATE] and [DATE]."),
        ("On March 14, 2021, then 14 Mar 2021 and 14-Mar-2021.", "date", "On [DATE], then [DATE] and [DATE]."),
    ],
)
def test_scrub_replaces_each_kind(raw, kind, expected):
    out, counts = scrub(raw)
    assert out == expected
    assert counts[kind] == expected.count(f"[{kind.upper()}]")
    assert sum(counts.values()) == counts[kind]


def test_scrub_keeps_clinical_values_years_and_deid_spans():
    raw = (
        "Name: ___ Unit No: ___ MRN: ___ Admission Date: ___\nBP 120/80, HR 88, ABG 7.35/40/80, "
        "amoxicillin 500 mg three times daily, 1-2 tabs q4-6h, plt 150-400, pain 5/10, smoker since 2019, "
        "1999-2000 admissions, K 4.0, penicillin 2400000 units, pager 12345"
    )
    out, counts = scrub(raw)
    assert out == raw
    assert counts == {"email": 0, "phone": 0, "id": 0, "date": 0}


def test_scrub_records_prompt_and_reference_with_counts():
    tally = Tally()
    records = [
        record("ehrdsqa", "1", "p1", "Name: ___ seen 03/14/2021, call 555-123-4567", "MRN: 1234567"),
        record("pmc_patients", "2", "a1", "no identifiers, 500 mg", "none"),
    ]
    out = list(scrub_records(records, tally))
    assert user(out[0]) == "Name: ___ seen [DATE], call [PHONE]" and out[0]["reference"] == "MRN: [ID]"
    assert out[1]["reference"] == "none"
    assert tally.counts["date"] == {"ehrdsqa": 1, "pmc_patients": 0}
    assert tally.counts["id"]["ehrdsqa"] == 1 and tally.counts["phone"]["ehrdsqa"] == 1
    assert tally.counts["records_changed"] == {"ehrdsqa": 1, "pmc_patients": 0}


# ----------------------------------------------------------------------------- length


def test_length_filter_counts_short_and_long_with_the_chat_template(tokenizer):
    records = [record("healthqa", str(i), str(i), text(i, n)) for i, n in enumerate([2, 20, 40, 400])]
    n = token_lengths(records, tokenizer)
    plain = [len(tokenizer(user(r))["input_ids"]) for r in records]
    assert all(a > b for a, b in zip(n, plain))  # system prompt, reference and template tokens counted
    tally, lengths = Tally(), {}
    kept = list(length_filter(records, tokenizer, n[0] + 1, n[2], tally, batch_size=3, lengths=lengths))
    assert [r["id"] for r in kept] == ["healthqa:1", "healthqa:2"]
    assert tally.dropped["too_short"] == {"healthqa": 1} and tally.dropped["too_long"] == {"healthqa": 1}
    assert lengths == {"healthqa:1": n[1], "healthqa:2": n[2]}


# ----------------------------------------------------------------------------- dedupe


def test_dedupe_exact_and_near_across_sources():
    base = text(1)
    changed = base.split()
    changed[30] = "changedword"
    records = [
        record("ehrdsqa", "a", "p1", base),
        record("pmc_patients", "b", "x1", "  " + base.upper()),  # exact after case/space folding
        record("pmc_patients", "c", "x2", " ".join(changed)),  # one word changed: near duplicate
        record("pmc_patients", "d", "x3", text(2)),  # a different text
        record("ehrdsqa", "e", "p1", " ".join(changed), "another answer"),
    ]  # same group: kept
    tally = Tally()
    kept = [r["id"] for r in dedupe(records, tally, near_threshold=0.8)]
    assert kept == ["ehrdsqa:a", "pmc_patients:d", "ehrdsqa:e"]
    assert tally.dropped["exact_duplicate"] == {"pmc_patients": 1}
    assert tally.dropped["near_duplicate"] == {"pmc_patients": 1}
    near = next(e for e in tally.examples if e["reason"] == "near_duplicate")
    assert near["id"] == "pmc_patients:c" and near["of"] == "ehrdsqa:a" and near["jaccard"] >= 0.8
    # exact only: the near duplicate stays
    assert [r["id"] for r in dedupe(records, near_threshold=None)] == [
        "ehrdsqa:a",
        "pmc_patients:c",
        "pmc_patients:d",
        "ehrdsqa:e",
    ]


# ----------------------------------------------------------------------------- decontaminate

QUESTION = "Which of the following enzymes is most specific for acute damage to the myocardium in adults"


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
    test_text = _prompt(test) + "\n" + test["reference"]
    flat = record("pmc_patients", "x", "x", (_prompt(train) + " " + train["reference"]).replace("\n", " "), "")
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


# ----------------------------------------------------------------------------- group split

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_group_split_keeps_groups_together_and_respects_fractions():
    records = [record("ehrdsqa", f"{g}:{i}", f"patient{g}", "q") for g in range(1000) for i in range(3)]
    tally = Tally()
    pairs = list(group_split(records, FRACTIONS, "seed", tally))
    splits_of_group: dict[str, set] = {}
    for split, r in pairs:
        splits_of_group.setdefault(r["group"], set()).add(split)
    assert all(len(s) == 1 for s in splits_of_group.values())
    per_split = Counter(next(iter(s)) for s in splits_of_group.values())
    assert abs(per_split["train"] - 800) < 50 and abs(per_split["validation"] - 100) < 30
    assert abs(per_split["test"] - 100) < 30
    assert sum(tally.counts["test"].values()) == 3 * per_split["test"]
    # stable: same split whatever the order and run; another seed moves groups
    again = {r["group"]: split for split, r in group_split(reversed(records), FRACTIONS, "seed")}
    assert all(again[g] == next(iter(s)) for g, s in splits_of_group.items())
    assert split_of("patient7", FRACTIONS, "seed") == split_of("patient7", dict(FRACTIONS), "seed")
    other = sum(split_of(f"patient{g}", FRACTIONS, "other") != again[f"patient{g}"] for g in range(1000))
    assert other > 100


def test_fractions_are_checked():
    with pytest.raises(MedllmError, match="fractions"):
        list(group_split([], {"train": 0.8, "test": 0.1}))
    with pytest.raises(MedllmError, match="unknown setting"):
        CurateConfig.from_value({"min_token": 3})


# ----------------------------------------------------------------------------- mixture


def test_caps_sample_uniformly_in_split_proportions_and_reproducibly():
    records = [record("bioread", str(i), f"b{i}", "q") for i in range(500)] + [
        record("clicr", str(i), f"c{i}", "q") for i in range(30)
    ]
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}

    def run(seed):
        tally = Tally()
        return cap_sources(group_split(records, fractions, "s"), {"bioread": 100}, fractions, seed, tally), tally

    splits, tally = run(0)
    bioread = {k: [r for r in v if r["source"] == "bioread"] for k, v in splits.items()}
    assert [len(bioread[s]) for s in ("train", "validation", "test")] == [80, 10, 10]
    assert sum(r["source"] == "clicr" for v in splits.values() for r in v) == 30  # uncapped
    assert sum(tally.dropped["cap"].values()) == 400 and tally.kept["bioread"] == 100
    assert max(int(r["id"].split(":")[1]) for r in bioread["train"]) > 300  # not the first 100 read
    ids = [r["id"] for r in splits["train"]]
    assert ids == sorted(ids, key=lambda i: (i.split(":")[0] != "bioread", int(i.split(":")[1])))  # stream order
    assert ids == [r["id"] for r in run(0)[0]["train"]] != [r["id"] for r in run(1)[0]["train"]]


def test_weights_set_shares_and_need_every_source():
    records = [record("bioread", str(i), str(i), "q") for i in range(300)] + [
        record("clicr", str(i), str(i), "q") for i in range(50)
    ]
    tally = Tally()
    out = weight_sources(records, {"bioread": 3, "clicr": 1}, seed=0, tally=tally)
    counts = Counter(r["source"] for r in out)
    assert counts == {"bioread": 150, "clicr": 50}  # clicr, shortest of its share, sets the size
    assert tally.dropped["weight"] == {"bioread": 150, "clicr": 0}
    assert [r["id"] for r in out] == [r["id"] for r in weight_sources(records, {"bioread": 3, "clicr": 1}, seed=0)]
    assert weight_sources(records, {}) == records
    with pytest.raises(MedllmError, match="clicr"):
        weight_sources(records, {"bioread": 1})


# ----------------------------------------------------------------------------- recipe and card

SPLIT3 = {"train": 0.6, "validation": 0.2, "test": 0.2}
LEAK_GROUP = next(f"pmid-leak{k}" for k in range(100) if split_of(f"pmid-leak{k}", SPLIT3, "medllm") == "train")


def corpus() -> tuple[list[dict], dict[str, LoadStats]]:
    """Two sources: distinct cases, a date in each note, a cross-source copy, an MMLU leak, one too long."""
    records = []
    for i in range(40):
        prompt = f"Discharge note: {text(1000 + i, 40)} seen 03/14/2021. Question: {text(2000 + i, 8)}"
        records.append(record("ehrdsqa", f"{i}:0", f"p{i // 2}", prompt, text(3000 + i, 6)))
    for i in range(30):
        records.append(
            record(
                "pmc_patients",
                str(i),
                f"pmid{i}",
                f"Patient summary: {text(4000 + i, 50)}",
                f"A case of {text(5000 + i, 4)}",
            )
        )
    records.append(record("pmc_patients", "copy", "pmid-copy", user(records[0]), records[0]["reference"]))
    records.append(
        record("pmc_patients", "leak", LEAK_GROUP, f"Patient summary: {text(6000, 20)} {QUESTION}", "A case")
    )
    records.append(record("pmc_patients", "long", "pmid-long", f"Patient summary: {text(7000, 3000)}", "A case"))
    stats = {
        "ehrdsqa": LoadStats(read=20, yielded=40, bad=2, bad_locations=["f.json [3]", "f.json [9]"]),
        "pmc_patients": LoadStats(read=33, yielded=33),
    }
    return records, stats


@pytest.fixture(scope="module")
def curated(tokenizer):
    records, stats = corpus()
    config = {"min_tokens": 8, "max_tokens": 2000, "fractions": SPLIT3, "mixture": {"ehrdsqa": {"cap": 30}}}
    return curate(iter(records), config, tokenizer, {"mmlu_medical": [QUESTION]}, stats)


def test_curate_chains_the_steps_with_counts(curated):
    splits, report = curated
    steps = report["steps"]
    assert list(steps) == ["normalize", "scrub", "length", "dedupe", "split", "cap", "decontaminate", "weight"]
    assert steps["normalize"]["in"] == {"ehrdsqa": 40, "pmc_patients": 33}
    for before, after in [
        ("normalize", "scrub"),
        ("scrub", "length"),
        ("length", "dedupe"),
        ("dedupe", "split"),
        ("split", "cap"),
        ("decontaminate", "weight"),
    ]:
        assert steps[before]["out"] == steps[after]["in"], (before, after)
    assert steps["length"]["dropped"] == {"too_long": {"pmc_patients": 1}}
    assert steps["dedupe"]["dropped"] == {"exact_duplicate": {"pmc_patients": 1}}
    # the cap of 30 is shared out 18/6/6 and filled from what each split has; pmc_patients is uncapped
    assert 20 <= steps["cap"]["out"]["ehrdsqa"] <= 30 and steps["cap"]["out"]["pmc_patients"] == 31
    assert steps["cap"]["dropped"]["cap"]["ehrdsqa"] == 40 - steps["cap"]["out"]["ehrdsqa"]
    assert sum(r["source"] == "ehrdsqa" for r in splits["test"]) <= 6
    assert steps["decontaminate"]["scope"] == "train" and steps["weight"]["out_total"] == len(splits["train"])
    # every note has a date; so does the cross-source copy, scrubbed before it is found a duplicate
    assert report["scrub"]["total"]["date"] == 41
    assert report["scrub"]["records_changed"] == {"ehrdsqa": 40, "pmc_patients": 1}
    assert all("[DATE]" in user(r) for rows in splits.values() for r in rows if r["source"] == "ehrdsqa")
    assert report["sources"]["ehrdsqa"]["bad"] == 2
    assert report["split_sizes"] == {s: len(v) for s, v in splits.items()}
    assert (
        sum(report["split_sizes"].values())
        == steps["cap"]["out_total"] - steps["decontaminate"]["in_total"] + steps["decontaminate"]["out_total"]
    )
    groups = {s: {r["group"] for r in rows} for s, rows in splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    lengths = report["token_lengths"]
    assert lengths["by_source"]["ehrdsqa"]["n"] == steps["cap"]["out"]["ehrdsqa"]
    assert lengths["by_source"]["pmc_patients"]["max"] <= 2000
    assert sum(lengths["histogram"]["counts"]["pmc_patients"]) == sum(
        report["splits"][s].get("pmc_patients", 0) for s in splits
    )
    json.dumps(report)  # JSON-ready


def test_curate_decontaminates_train_against_eval_sets_and_the_test_split(curated):
    splits, report = curated
    decon = report["decontamination"]
    assert "pmc_patients:leak" not in {r["id"] for r in splits["train"]}
    assert decon["dropped"] == {"mmlu_medical": {"pmc_patients": 1}} and decon["dropped_total"] == 1
    assert decon["examples"][0]["id"] == "pmc_patients:leak"
    assert decon["eval_sets"]["mmlu_medical"] == {"texts": 1, "units": 1, "too_short": 0}
    test_groups = {r["group"] for r in splits["test"]}
    assert decon["eval_sets"]["test_split"]["units"] == len(test_groups) > 0


def test_curate_drops_training_text_overlapping_the_test_split(tokenizer):
    shared = text(8000, 12)  # a paragraph quoted in two articles (different groups, not near duplicates)
    records = [
        record("pmc_patients", str(i), f"pmid{i}", f"Patient summary: {text(9000 + i, 60)} {shared}") for i in range(2)
    ]
    groups = {}
    for k in range(200):
        groups.setdefault(split_of(f"g{k}", SPLIT3, "medllm"), f"g{k}")
    records[0]["group"], records[1]["group"] = groups["test"], groups["train"]
    splits, report = curate(records, {"min_tokens": 1, "fractions": SPLIT3}, tokenizer)
    assert [r["id"] for r in splits["test"]] == ["pmc_patients:0"] and splits["train"] == []
    assert report["decontamination"]["dropped"] == {"test_split": {"pmc_patients": 1}}
    kept, _ = curate(records, {"min_tokens": 1, "fractions": SPLIT3, "decontaminate_test_split": False}, tokenizer)
    assert [r["id"] for r in kept["train"]] == ["pmc_patients:1"]


def test_data_card_files_counts_and_plots(curated, tmp_path):
    splits, report = curated
    extra = {"local_notes": SourceInfo("qa", "internal use only", "hospital IRB approval", "notes.json")}
    written = write_data_card(
        tmp_path / "card",
        report,
        ["ehrdsqa", "pmc_patients", "local_notes"],
        splits["train"] + splits["test"],
        extra_sources=extra,
    )
    assert set(written) == {"data_card.md", "data_card.json", "token_lengths.png", "mixture.png"}
    for name in ("token_lengths.png", "mixture.png"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads(written["data_card.json"].read_text())
    assert card["sources"]["ehrdsqa"]["license"] == SOURCES["ehrdsqa"].license
    assert card["sources"]["local_notes"]["access"] == "hospital IRB approval"
    assert card["report"]["steps"]["dedupe"]["dropped"] == {"exact_duplicate": {"pmc_patients": 1}}
    assert all(len(v) <= 3 for v in card["examples"].values()) and card["examples"]["pmc_patients"]
    md = written["data_card.md"].read_text()
    for expected in (
        SOURCES["pmc_patients"].license,
        "internal use only",
        "| dedupe |",
        "exact_duplicate 1",
        "## Scrubbed identifiers",
        "## Decontamination",
        "## Splits",
        "![mixture](mixture.png)",
        "### ehrdsqa",
    ):
        assert expected in md, expected
    assert not list((tmp_path / "card").glob(".*"))  # no temporary file left
    with pytest.raises(MedllmError, match="unknown_source"):
        write_data_card(tmp_path / "other", report, ["unknown_source"], [])
