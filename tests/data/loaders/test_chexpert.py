"""CheXpert and CheXpert Plus loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

from medllm.data.loaders.chexpert import CHEXPERT_COLUMNS, chexpert_sentence

# ----------------------------------------------------------------------------- CheXpert


@pytest.fixture
def chexpert_csv(tmp_path) -> Path:
    lines = [
        ",".join(CHEXPERT_COLUMNS),
        # the format doc's example: No Finding 1.0, Pneumothorax 0.0, Support Devices 1.0
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
        "CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg,Female,68,Lateral,,1.0,,,,,,,,,0.0,,,,1.0",
        "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Male,77,Frontal,PA,,,1.0,,,-1.0,,,,,0.0,,,",
        "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Unknown,45,Frontal,AP,,,,,,,,,,,,,,",
    ]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_chexpert(chexpert_csv, load, user, check_shape):
    records, stats = load("chexpert", chexpert_csv)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        (
            "chexpert:CheXpert-v1.0-small/train/patient00001/study1",
            "patient00001",
            "No finding. Also: support devices; no pneumothorax.",
            {"labels": {"No Finding": "positive", "Pneumothorax": "negative", "Support Devices": "positive"}},
        ),
        (
            "chexpert:CheXpert-v1.0-small/train/patient00002/study2",
            "patient00002",
            "Findings: cardiomegaly; possible (uncertain) edema; no pleural effusion.",
            {"labels": {"Cardiomegaly": "positive", "Edema": "uncertain", "Pleural Effusion": "negative"}},
        ),
    ]
    assert user(records[1]) == (
        "Chest radiograph study.\nPatient: male, 77 years.\nCheXpert labels from the report:\n"
        "- Cardiomegaly: positive\n- Edema: uncertain\n- Pleural Effusion: negative\n"
        "Write the findings as one statement; state uncertain labels as uncertain."
    )
    for record in records:
        check_shape(record, "chexpert")
    # the lateral view repeats study1's labels; patient00003 has no label mentioned
    assert (stats.read, stats.yielded, stats.filtered, stats.bad) == (4, 2, 2, 0)


def test_chexpert_sentence():
    assert chexpert_sentence({"No Finding": "positive"}) == "No finding."
    assert chexpert_sentence({"Pleural Other": "uncertain", "Fracture": "positive"}) == (
        "Findings: fracture; possible (uncertain) other pleural abnormality."
    )


@pytest.fixture
def chexpert_plus_csv(tmp_path, write_csv) -> Path:
    header = [
        "path_to_image",
        "path_to_dcm",
        "frontal_lateral",
        "section_findings",
        "section_impression",
        "age",
        "sex",
        "split",
    ]
    return write_csv(
        tmp_path / "df_chexpert_plus_240401.csv",
        header,
        [
            [
                "train/patient00001/study1/view1_frontal.jpg",
                "train/patient00001/study1/view1_frontal.dcm",
                "Frontal",
                "Heart size is normal.\nA right internal jugular line ends in the SVC.",
                "1. No acute process.",
                "68",
                "Female",
                "train",
            ],
            [
                "train/patient00001/study1/view2_lateral.jpg",
                "",
                "Lateral",
                "Heart size is normal.\nA right internal jugular line ends in the SVC.",
                "1. No acute process.",
                "68",
                "Female",
                "train",
            ],
            [
                "train/patient00002/study1/view1_frontal.jpg",
                "",
                "Frontal",
                "",
                "Stable cardiomegaly.",
                "77",
                "Male",
                "train",
            ],
        ],
    )


def test_chexpert_plus(chexpert_plus_csv, load, user, check_shape):
    records, stats = load("chexpert_plus", chexpert_plus_csv)
    assert [(r["id"], r["group"], r["reference"], r["meta"]) for r in records] == [
        ("chexpert_plus:train/patient00001/study1", "patient00001", "1. No acute process.", {"split": "train"})
    ]
    assert user(records[0]) == (
        "Chest radiograph report.\nPatient: female, 68 years.\nFindings: Heart size is "
        "normal.\nA right internal jugular line ends in the SVC.\n\nWrite the impression."
    )
    check_shape(records[0], "chexpert_plus")
    assert (stats.read, stats.yielded, stats.filtered) == (3, 1, 2)  # a second view, a report without findings
