"""Findings in text → HPO terms with pertinent negatives: a tiny hand-made ontology (fast) and the real HPO release.

Each negation case would fail without negation handling: the term is found either way, only ``excluded`` differs.
"""

from __future__ import annotations

import numpy as np
import pytest

from medllm.errors import MedllmError
from medllm.phenotype.findings import Finding, case_ids, describe, recognise, require_findings
from medllm.phenotype.kb import build_knowledge_base, load_knowledge_base
from medllm.phenotype.lexicon import Lexicon, key_of, read_synonyms, stem

TERMS = [
    # id, name, parent, extra stanza lines
    ("HP:0000118", "Phenotypic abnormality", "HP:0000001", []),
    ("HP:0012823", "Clinical modifier", "HP:0000001", []),
    ("HP:0012825", "Mild", "HP:0012823", []),
    ("HP:0001250", "Seizure", "HP:0000118", ["alt_id: HP:0002279", 'synonym: "Seizures" EXACT plural_form []']),
    ("HP:0007359", "Focal-onset seizure", "HP:0001250", ['synonym: "Focal seizure" EXACT []']),
    ("HP:0100749", "Chest pain", "HP:0000118", []),
    ("HP:0002094", "Dyspnea", "HP:0000118", ['synonym: "Shortness of breath" EXACT layperson []']),
    ("HP:0001945", "Fever", "HP:0000118", []),
    ("HP:0012735", "Cough", "HP:0000118", []),
    ("HP:0000988", "Skin rash", "HP:0000118", ['synonym: "Rash" EXACT layperson []']),
    ("HP:0001252", "Hypotonia", "HP:0000118", ['synonym: "Low muscle tone" EXACT layperson []']),
    ("HP:0009777", "Absent thumb", "HP:0000118", []),
    ("HP:0001629", "Ventricular septal defect", "HP:0000118", ['synonym: "VSD" EXACT abbreviation []']),
    ("HP:0000033", "Ambiguous genitalia, male", "HP:0000118", []),
    ("HP:0001263", "Café-au-lait spot", "HP:0000118", ['synonym: "Old name" EXACT obsolete_synonym []']),
    ("HP:0000256", "Macrocephaly", "HP:0000118", ['synonym: "Big head" RELATED layperson []']),
    ("HP:0005280", "Depressed nasal bridge", "HP:0000118", []),
    ("HP:0000446", "Narrow nasal bridge", "HP:0000118", ['synonym: "Nasal bridge, thin" EXACT layperson []']),
    ("HP:0000160", "Narrow mouth", "HP:0000118", ['synonym: "Mouth, narrow" EXACT []']),
    ("HP:0032218", "Increased CD4:CD8 ratio", "HP:0000118", []),
    ("HP:0002376", "Developmental regression", "HP:0000118", ['synonym: "Skills lost once developed" EXACT []']),
    ("HP:0001249", "Intellectual disability", "HP:0000118", []),
    ("HP:0001256", "Intellectual disability, mild", "HP:0001249", []),
    (
        "HP:0002187",
        "Intellectual disability, profound",
        "HP:0001249",
        ['synonym: "Profound mental retardation" EXACT []'],
    ),
]
OBSOLETE = "[Term]\nid: HP:0000999\nname: obsolete fits\nis_obsolete: true\nreplaced_by: HP:0001250\n"


def write_tiny_hpo(folder):
    stanzas = ["format-version: 1.2\n", "[Term]\nid: HP:0000001\nname: All\n"]
    for term, name, parent, extra in TERMS:
        stanzas.append("\n".join([f"[Term]\nid: {term}\nname: {name}", *extra, f"is_a: {parent} ! parent"]) + "\n")
    stanzas.append(OBSOLETE)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hp.obo").write_text("\n".join(stanzas), encoding="utf-8")
    header = (
        "database_id disease_name qualifier hpo_id reference evidence onset frequency sex modifier aspect biocuration"
    )
    row = ["OMIM:1", "Disease one", "", "HP:0001250", "PMID:1", "PCS", "", "", "", "", "P", "x"]
    (folder / "phenotype.hpoa").write_text(
        "#version: 2099-01-01\n" + "\t".join(header.split()) + "\n" + "\t".join(row) + "\n"
    )
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_tiny_hpo(tmp_path_factory.mktemp("hpo"))
    kb = build_knowledge_base(folder)
    return kb, Lexicon(kb, read_synonyms(folder / "hp.obo"))


def found(text, tiny) -> list[tuple[str, bool]]:
    kb, lexicon = tiny
    return [(f.term_id, f.excluded) for f in recognise(text, kb, lexicon=lexicon)]


def test_normalisation():
    assert [stem(w) for w in ("seizures", "abnormalities", "reflexes", "stenosis", "ptosis", "fever")] == [
        "seizure",
        "abnormality",
        "reflex",
        "stenosis",
        "ptosis",
        "fever",
    ]
    assert key_of("Café-au-lait spots") == ("cafe", "au", "lait", "spot")
    assert key_of("Abnormality of the heart") == ("abnormality", "of", "heart")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no seizures", [("HP:0001250", True)]),
        ("Seizures.", [("HP:0001250", False)]),
        ("Denies chest pain but reports dyspnea.", [("HP:0100749", True), ("HP:0002094", False)]),
        ("No fever, cough or rash.", [("HP:0001945", True), ("HP:0012735", True), ("HP:0000988", True)]),
        ("Excluded: hypotonia, seizures", [("HP:0001252", True), ("HP:0001250", True)]),
        ("Fever; no cough. Rash", [("HP:0001945", False), ("HP:0012735", True), ("HP:0000988", False)]),
        ("Without fever, however a cough", [("HP:0001945", True), ("HP:0012735", False)]),
        ("Negative for rash except cough", [("HP:0000988", True), ("HP:0012735", False)]),
        ("free of seizures", [("HP:0001250", True)]),
        ("no evidence of hypotonia", [("HP:0001252", True)]),
        ("neither fever nor cough", [("HP:0001945", True), ("HP:0012735", True)]),
        ("Seizures were ruled out, has hypotonia", [("HP:0001250", True), ("HP:0001252", False)]),
        ("fever and cough were absent", [("HP:0001945", True), ("HP:0012735", True)]),
        ("rash: denied", [("HP:0000988", True)]),
        ("Fever is not present.", [("HP:0001945", True)]),
        ("Seizures cannot be excluded.", [("HP:0001250", False)]),
        ("not only fever but seizures", [("HP:0001945", False), ("HP:0001250", False)]),
        ("absent thumb", [("HP:0009777", False)]),  # the cue is part of the term's name
        ("The patient didn't have a fever", [("HP:0001945", True)]),
        ("No history of seizures, and developed a cough", [("HP:0001250", True), ("HP:0012735", False)]),
        ("Excluded: skills lost once developed, fever", [("HP:0002376", True), ("HP:0001945", True)]),
        ("No fever. Cough present. Rash absent.", [("HP:0001945", True), ("HP:0012735", False), ("HP:0000988", True)]),
    ],
)
def test_negation(tiny, text, expected):
    assert found(text, tiny) == expected


def test_matching(tiny):
    assert found("focal seizures", tiny) == [("HP:0007359", False)]  # longest match, not "seizure"
    assert found("shortness of breath and low muscle tone", tiny) == [("HP:0002094", False), ("HP:0001252", False)]
    assert found("big head", tiny) == [("HP:0000256", False)]  # a related layperson synonym
    assert found("cafe au lait spots, cafe-au-lait spot, CAFÉ-AU-LAIT SPOT", tiny) == [("HP:0001263", False)] * 3
    assert found("Ambiguous genitalia, male", tiny) == [("HP:0000033", False)]  # a name holding a comma
    assert found("ambiguous genitalia male", tiny) == []
    assert found("CD4:CD8 ratio increased; increased CD4:CD8 ratio", tiny) == [("HP:0032218", False)]
    # An inverted synonym ("Nasal bridge, thin") is read in reading order, never across a list's comma.
    assert found("Depressed nasal bridge, thin mouth, narrow", tiny) == [("HP:0005280", False)]
    assert found("thin nasal bridge and narrow mouth", tiny) == [("HP:0000446", False), ("HP:0000160", False)]
    assert found("Intellectual disability, mild, seizures", tiny) == [("HP:0001256", False), ("HP:0001250", False)]
    assert found("mild intellectual disability", tiny) == [("HP:0001256", False)]
    # In a list, "Intellectual disability, Profound" is not read across the comma: "profound ..." starts the next item.
    expected = [("HP:0001249", False), ("HP:0002187", False)]
    assert found("intellectual disability, profound mental retardation", tiny) == expected
    assert found("VSD", tiny) == [("HP:0001629", False)]
    assert found("vsd", tiny) == []  # an abbreviation only as the ontology spells it
    assert found("old name", tiny) == []  # obsolete synonyms dropped
    assert found("mild", tiny) == []  # outside the phenotypic abnormalities
    kb, _ = tiny
    assert [f.term_id for f in recognise("mild", kb, lexicon=Lexicon(kb, [], roots=None))] == ["HP:0012825"]


def test_hpo_ids(tiny):
    # A live id, an alt_id and an obsolete id replaced by Seizure; an unknown id ignored.
    expected = [("HP:0001250", False), ("HP:0001250", False), ("HP:0001250", True), ("HP:0001945", True)]
    assert found("HP:0001250, HP:0002279; no HP:0000999 or HP_0001945; HP:0009999", tiny) == expected


def test_spans_and_list_input(tiny):
    kb, lexicon = tiny
    text = "Denies chest pain but reports dyspnea."
    first, second = recognise(text, kb, lexicon=lexicon)
    assert first == Finding("HP:0100749", "Chest pain", True, (7, 17), "chest pain", None, "name", 1.0)
    assert text[slice(*second.span)] == second.text == "dyspnea"
    items = recognise(["no seizures", "Fever", "denied: cough", "nothing here"], kb, lexicon=lexicon)
    assert [(f.item, f.term_id, f.excluded, f.span) for f in items] == [
        (0, "HP:0001250", True, (3, 11)),
        (1, "HP:0001945", False, (0, 5)),
        (2, "HP:0012735", True, (8, 13)),
    ]
    assert case_ids(items) == (["HP:0001945"], ["HP:0001250", "HP:0012735"])
    assert case_ids(recognise("fever. no fever", kb, lexicon=lexicon)) == (["HP:0001945"], [])
    assert "Chest pain (excluded)" in describe([first])


def test_nothing_recognised(tiny):
    kb, lexicon = tiny
    assert recognise("The patient is well.", kb, lexicon=lexicon) == []
    assert recognise([], kb, lexicon=lexicon) == []
    with pytest.raises(MedllmError, match="symptoms"):
        require_findings([], "symptoms")
    findings = recognise("fever", kb, lexicon=lexicon)
    assert require_findings(findings, "symptoms") is findings


def test_fallback(tiny):
    kb, lexicon = tiny
    asked = []

    def fallback(phrases):
        asked.extend(phrases)
        return [(kb.term_index("HP:0001252"), 0.9) if p == "floppy baby" else None for p in phrases]

    findings = recognise("Fever with floppy baby, no weird thing", kb, lexicon=lexicon, fallback=fallback)
    assert asked == ["floppy baby", "weird thing"]
    assert [(f.term_id, f.excluded, f.source, f.text) for f in findings] == [
        ("HP:0001945", False, "name", "Fever"),
        ("HP:0001252", False, "embedding", "floppy baby"),
    ]


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()  # cached: about a second, plus about a second for the lexicon


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No seizures.", [("HP:0001250", True)]),
        ("Denies chest pain but reports dyspnea.", [("HP:0100749", True), ("HP:0002094", False)]),
        ("No fever, cough or rash.", [("HP:0001945", True), ("HP:0012735", True), ("HP:0000988", True)]),
        ("Excluded: hypotonia, seizures", [("HP:0001252", True), ("HP:0001250", True)]),
        ("The child has a big head and short stature.", [("HP:0000256", False), ("HP:0004322", False)]),
        ("Known HP:0001250 (written as an id), also HP:0001275", [("HP:0001250", False), ("HP:0001250", False)]),
        ("She had focal seizures.", [("HP:0007359", False)]),
        ("Shortness of breath, no low muscle tone", [("HP:0002094", False), ("HP:0001252", True)]),
    ],
)
def test_real_hpo(kb, text, expected):
    assert [(f.term_id, f.excluded) for f in recognise(text, kb)] == expected


def test_embedding_fallback(tiny, tmp_path, monkeypatch):
    from medllm.phenotype.embedmatch import EmbeddingFallback

    kb, lexicon = tiny
    vocabulary = sorted({w for key in lexicon.entries for w in key} | {"floppy", "purple", "elephant"})

    def encode(texts):  # bag of words: word order and case do not matter, unlike for the lexicon
        rows = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in key_of(text):
                if word in vocabulary:
                    rows[i, vocabulary.index(word)] = 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    monkeypatch.setenv("MEDLLM_CACHE_DIR", str(tmp_path))
    fallback = EmbeddingFallback(lexicon, threshold=0.8, encode=encode)
    assert "Low muscle tone" in fallback.texts and "VSD" not in fallback.texts
    findings = recognise("Tone muscle low, no purple elephant", kb, lexicon=lexicon, fallback=fallback)
    assert [(f.term_id, f.excluded, f.source, round(f.score, 4)) for f in findings] == [
        ("HP:0001252", False, "embedding", 1.0)
    ]
    assert list((tmp_path / "phenotype").glob("term-embeddings-*.npy"))  # cached for the next process
    assert recognise("tone muscle low", kb, lexicon=lexicon) == []  # off by default
