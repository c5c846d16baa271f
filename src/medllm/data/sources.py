"""The seed datasets' registry, and the record schema every loader and generator yields.

Users bring the seed datasets' files (the README's table of sources names them;
:mod:`medllm.data.loaders` reads them); most need a registration or credentialed
access, so nothing downloads them. The offline simulators of
:mod:`medllm.data.simulators` generate records of the same schema.

A record is a plain dict::

    {"source": "ehrdsqa", "id": "ehrdsqa:17:0", "group": "10000001", "task": "qa",
     "messages": [{"role": "system", ...}, {"role": "user", ...}],   # the prompt only
     "reference": "...", "license": "...", "meta": {...}}

``id`` is unique within a source and starts with the source name. ``group``
is the unit of leakage-free splitting (a patient, an article, a document) and
carries no source prefix, so CheXpert and CheXpert Plus rows of one patient
(``patient00001``) share a group.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from medllm.prompts import ASSISTANT


@dataclass(frozen=True)
class SourceInfo:
    """What a data card states about a source, and what its loader expects."""

    task: str
    license: str
    access: str
    files: str  # expected files and format, quoted in errors


SOURCES = {
    "ehrdsqa": SourceInfo(
        "qa",
        "PhysioNet Credentialed Health Data License 1.5.0",
        "PhysioNet credentialed access (CITI training and a data use agreement); derived from MIMIC-IV-Note",
        "mimic_iv_note_qa.json / mimic_iv_note_qa_verified.json (a JSON array of note objects) or "
        "mimic_iv_note_qa.csv (one row a note), fields original_id, note, qa_pairs, note_id, subject_id",
    ),
    "pmc_patients": SourceInfo(
        "diagnosis",
        "CC BY-NC-SA 4.0",
        "public download; non-commercial use only",
        "PMC-Patients.json (a JSON array of patient objects) or PMC-Patients.csv, fields patient_uid, PMID, "
        "title, patient, age, gender, similar_patients",
    ),
    "bioread": SourceInfo(
        "cloze",
        "terms of the BioRead release (not stated in the files; articles from the PMC Open Access subset)",
        "public download from the authors (Pappas et al., 2018)",
        "bioread_dataset/{bioread,bioread_lite}/*_part_N.txt text shards (a file, folder or glob): context, "
        "question, candidates, answer separated by a line of 30 dashes, records by a line of '='",
    ),
    "clicr": SourceInfo(
        "cloze",
        "research use under the CliCR data agreement (BMJ Case Reports content)",
        "by request from the authors (Šuster & Daelemans, 2018)",
        "train1.0.json, dev1.0.json, test1.0.json (a file, folder or glob): "
        '{"version", "data": [{"source", "document": {"title", "context", "qas": [...]}}]}',
    ),
    "healthqa": SourceInfo(
        "consumer_qa",
        "research use under the HealthQA data agreement (patient.info content)",
        "by request from the authors (Zhu et al., 2019)",
        "pinfo-mz-{train,dev,test}.txt: tab-separated, no header: label (0/1), question, answer paragraph; "
        "one positive row then 9 negatives per question",
    ),
    "chexpert": SourceInfo(
        "report_summary",
        "Stanford University School of Medicine CheXpert Dataset Research Use Agreement",
        "registration and research-use agreement (Stanford AIMI)",
        "train.csv / valid.csv with header Path, Sex, Age, Frontal/Lateral, AP/PA and the 14 CheXpert labels",
    ),
    "chexpert_plus": SourceInfo(
        "report_summary",
        "Stanford University Dataset Research Use Agreement (CheXpert Plus)",
        "registration and research-use agreement (Stanford AIMI)",
        "df_chexpert_plus_240401.csv with columns path_to_image, section_findings, section_impression "
        "(and age, sex, split)",
    ),
}

SYSTEM_PROMPTS = {
    "qa": f"{ASSISTANT} You answer questions about a patient's discharge note using only the note.",
    "diagnosis": f"{ASSISTANT} You summarise a patient's case and name the most likely diagnosis.",
    "cloze": f"{ASSISTANT} You fill in the blank of a clinical or biomedical sentence.",
    "consumer_qa": f"{ASSISTANT} You answer health questions from the public clearly and accurately.",
    "report_summary": f"{ASSISTANT} You write concise chest radiograph report statements.",
    "summary": f"{ASSISTANT} You summarise a patient's record into the active problems and current medications.",
}


@dataclass
class LoadStats:
    """Counts of one or more loads.

    ``read`` counts the source's own records (an EHR-DS-QA note, a PMC patient,
    a BioRead instance, a CliCR document, a HealthQA row, a CheXpert row);
    ``yielded`` the records produced (a note gives one per QA pair);
    ``bad`` the source records skipped as malformed, first locations in
    ``bad_locations``; ``filtered`` what was dropped on purpose (pairs marked
    incorrect, HealthQA negatives, repeated views of a CheXpert study).
    """

    read: int = 0
    yielded: int = 0
    bad: int = 0
    filtered: int = 0
    bad_locations: list[str] = field(default_factory=list)


def reservoir_sample(records: Iterable[dict], k: int | None, seed: int = 0) -> tuple[list[dict], int]:
    """A seeded uniform sample of at most ``k`` of a stream (all of it when ``k`` is None), and how many were read.

    Holds ``k`` records whatever the stream's length: how a 16M-record source
    is drawn from without holding it.
    """
    rng, sample, seen = random.Random(seed), [], 0
    for seen, record in enumerate(records, 1):
        if k is None or len(sample) < k:
            sample.append(record)
        elif (j := rng.randrange(seen)) < k:
            sample[j] = record
    return sample, seen


def make_record(source: str, info: SourceInfo, key: str, group: str, prompt: str, reference: str, meta: dict) -> dict:
    """A record of the common schema; the system prompt is the task's."""
    return {
        "source": source,
        "id": f"{source}:{key}",
        "group": group,
        "task": info.task,
        "messages": [{"role": "system", "content": SYSTEM_PROMPTS[info.task]}, {"role": "user", "content": prompt}],
        "reference": reference,
        "license": info.license,
        "meta": meta,
    }
