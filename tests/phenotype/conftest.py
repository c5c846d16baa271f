"""A tiny hand-made HPO (hp.obo and phenotype.hpoa in the real formats) with answers worked out by hand.

All (HP:0000001)
└── Phenotypic abnormality (HP:0000118)
    ├── A (HP:0000002): A1 (HP:0000003, alt_id HP:0000008), A2 (HP:0000004)
    └── B (HP:0000005): B1 (HP:0000006)
HP:0000007: obsolete, replaced_by HP:0000003

OMIM:1  A1 1/2, B1 1/1
OMIM:2  A2 very frequent (0.9), NOT B1
OMIM:3  B (no frequency given)
ORPHA:9 A1 (ranked only when ORPHA is asked for)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medllm.phenotype.kb import KnowledgeBase, build_knowledge_base

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
