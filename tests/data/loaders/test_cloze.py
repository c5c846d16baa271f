"""BioRead and CliCR cloze loaders."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

# ----------------------------------------------------------------------------- BioRead

BIOREAD_1 = """@entity1 is a common cause of @entity2 in adults .
treatment of @entity2 with @entity3 reduces symptoms .
------------------------------
patients with XXXXXX were given @entity3 .
------------------------------
@entity1:smoking
@entity2:chronic bronchitis
@entity3:bronchodilators
------------------------------
@entity2:chronic bronchitis
=============================="""
BIOREAD_2 = """@entity5 levels rise in @entity6 .
------------------------------
XXXXXX is measured to diagnose @entity6 .
------------------------------
@entity5:troponin
@entity6:myocardial infarction
------------------------------
@entity5:troponin"""


@pytest.fixture
def bioread_dir(tmp_path) -> Path:
    folder = tmp_path / "bioread_dataset" / "bioread_lite"
    folder.mkdir(parents=True)
    (folder / "test_part_10.txt").write_text(BIOREAD_2 + "\n")
    # records end at a line of '=' or, tolerantly, at a blank line after the answer
    (folder / "test_part_2.txt").write_text(BIOREAD_1 + "\n" + BIOREAD_2 + "\n\n\n" + BIOREAD_2 + "\n")
    return folder


def test_bioread(bioread_dir, load, user, check_shape):
    records, stats = load("bioread", bioread_dir)
    assert [(r["id"], r["reference"]) for r in records] == [
        ("bioread:bioread_lite/test_part_2:1", "chronic bronchitis"),  # part_2 before part_10
        ("bioread:bioread_lite/test_part_2:12", "troponin"),
        ("bioread:bioread_lite/test_part_2:22", "troponin"),
        ("bioread:bioread_lite/test_part_10:1", "troponin"),
    ]
    first = records[0]
    assert first["meta"] == {"candidates": ["smoking", "chronic bronchitis", "bronchodilators"]}
    assert user(first) == (
        "Text:\n@entity1 is a common cause of @entity2 in adults .\ntreatment of @entity2 with @entity3 reduces "
        "symptoms .\n\nSentence: patients with ____ were given @entity3 .\nCandidates (entity: name):\n"
        "@entity1: smoking\n@entity2: chronic bronchitis\n@entity3: bronchodilators\n"
        "Fill in the blank (____) with one candidate; answer with its name."
    )
    assert len({r["group"] for r in records}) == 2  # same context, same group
    assert records[1]["group"] == records[3]["group"]
    for record in records[:1]:
        check_shape(record, "bioread")
    assert (stats.read, stats.bad) == (4, 0)

    glob_records, _ = load("bioread", bioread_dir / "*_part_10.txt")
    assert [r["id"] for r in glob_records] == ["bioread:bioread_lite/test_part_10:1"]


def test_bioread_record_that_does_not_fit_is_located(tmp_path, caplog, load):
    broken = BIOREAD_2.replace("------------------------------\n@entity5:troponin", "")  # no answer part
    path = tmp_path / "train_part_1.txt"
    path.write_text(BIOREAD_1 + "\n" + broken + "\n==========\n" + BIOREAD_1 + "\n")
    with caplog.at_level(logging.WARNING, logger="medllm.data.loaders.reading"):
        records, stats = load("bioread", path, max_bad_fraction=0.5)
    assert len(records) == 2 and stats.bad_locations == [f"{path}:12"]
    assert "expected 4 parts" in caplog.text


# ----------------------------------------------------------------------------- CliCR


@pytest.fixture
def clicr_dir(tmp_path) -> Path:
    data = {
        "version": "1.0",
        "data": [
            {
                "source": "http://casereports.bmj.com/content/invented-1",
                "document": {
                    "title": "BEG__Lyme disease__END presenting with facial palsy",
                    "context": "a 34-year-old hiker developed BEG__erythema migrans__END and then "
                    "BEG__facial palsy__END .",
                    "qas": [
                        {
                            "id": "invented-1.1",
                            "query": "serology confirmed @placeholder .",
                            "answers": [
                                {"text": "Lyme disease", "origin": "dataset", "cui": "C0024198", "sem_type": "dsyn"},
                                {"text": "Lyme borreliosis", "origin": "UMLS", "cui": "C0024198", "sem_type": "dsyn"},
                                {"text": "Lyme disease", "origin": "UMLS", "cui": "C0024198", "sem_type": "dsyn"},
                            ],
                        },
                        {
                            "id": "invented-1.2",
                            "query": "she was treated with BEG__@placeholder__END .",
                            "answers": [
                                {"text": "doxycycline", "origin": "dataset", "cui": "C0013090", "sem_type": "phsu"}
                            ],
                        },
                    ],
                },
            },
            {
                "source": "http://casereports.bmj.com/content/invented-2",
                "document": {
                    "title": "A swollen knee",
                    "context": "a child had a hot swollen knee after a BEG__scratch__END .",
                    "qas": [
                        {
                            "id": "invented-2.1",
                            "query": "aspiration grew @placeholder .",
                            "answers": [
                                {"text": "Staphylococcus aureus", "origin": "dataset"},
                                {"text": "S. aureus", "origin": "UMLS"},
                            ],
                        }
                    ],
                },
            },
        ],
    }
    (tmp_path / "dev1.0.json").write_text(json.dumps(data))
    return tmp_path


def test_clicr(clicr_dir, load, user, check_shape):
    records, stats = load("clicr", clicr_dir)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        (
            "clicr:invented-1.1",
            "http://casereports.bmj.com/content/invented-1",
            "Lyme disease",
            {"alternatives": ["Lyme borreliosis"]},
        ),
        ("clicr:invented-1.2", "http://casereports.bmj.com/content/invented-1", "doxycycline", {"alternatives": []}),
        (
            "clicr:invented-2.1",
            "http://casereports.bmj.com/content/invented-2",
            "Staphylococcus aureus",
            {"alternatives": ["S. aureus"]},
        ),
    ]
    assert user(records[1]) == (
        "Case report: Lyme disease presenting with facial palsy\n"
        "a 34-year-old hiker developed erythema migrans and then facial palsy .\n\n"
        "Query: she was treated with ____ .\nFill in the blank (____) with a word or phrase."
    )
    assert all("BEG__" not in user(r) and "__END" not in user(r) and "@placeholder" not in user(r) for r in records)
    for record in records[1:]:
        check_shape(record, "clicr")
    assert (stats.read, stats.yielded) == (2, 3)  # read counts documents
