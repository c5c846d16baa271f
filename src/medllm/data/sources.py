"""Streaming loaders for the seed datasets, all yielding one record schema.

Users bring the files (the README's table of sources names them); most need a
registration or credentialed access, so nothing here downloads. Every loader
is a generator that reads its file record by record (``ijson`` for JSON
arrays, the ``csv`` module, text shards line by line): the largest files do
not fit in memory and need not.

A record is a plain dict::

    {"source": "ehrdsqa", "id": "ehrdsqa:17:0", "group": "10000001", "task": "qa",
     "messages": [{"role": "system", ...}, {"role": "user", ...}],   # the prompt only
     "reference": "...", "license": "...", "meta": {...}}

``id`` is unique within a source and starts with the source name. ``group``
is the unit of leakage-free splitting (a patient, an article, a document) and
carries no source prefix, so CheXpert and CheXpert Plus rows of one patient
(``patient00001``) share a group.

A record that does not fit the format is skipped with a warning naming its
file and line (or JSON index) and counted in :class:`LoadStats`; too many of
them, a missing file or a file of another format raise :class:`MedllmError`.
"""

from __future__ import annotations

import ast
import csv
import glob
import hashlib
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ijson

from medllm.errors import MedllmError
from medllm.prompts import ASSISTANT

log = logging.getLogger(__name__)

MAX_BAD_FRACTION = 0.05
EARLY_CHECK = 100  # records read before the bad share is checked while loading (always checked at the end)
MAX_BAD_LOCATIONS = 10  # bad records logged and listed one by one; the rest are only counted
BLANK = "____"  # the cloze blank shown to the model (CliCR's @placeholder, BioRead's XXXXXX)


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

CHEXPERT_LABELS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]
CHEXPERT_VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}


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


class _Bad(Exception):
    """A source record that does not fit the format: skipped, logged and counted."""


# ----------------------------------------------------------------------------- field helpers


def _ident_or_none(value) -> str | None:
    """An id as text (JSON ints and CSV strings agree: 17 and "17"); None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad(f"expected an id, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _ident(obj: dict, *keys: str) -> str:
    """The first non-empty id among ``keys``."""
    for key in keys:
        value = _ident_or_none(obj.get(key))
        if value is not None:
            return value
    raise _Bad(f"missing field '{keys[0]}'" if len(keys) == 1 else f"missing fields {' and '.join(keys)}")


def _text(obj: dict, key: str, prefix: str = "") -> str:
    value = obj.get(key)
    if value is None:
        raise _Bad(f"missing field '{prefix}{key}'")
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"field '{prefix}{key}' must be non-empty text (got {value!r:.60})")
    return value.strip()


def _literal(value, key: str):
    """A list/dict field: as is from JSON; from CSV a JSON or Python literal (single quotes, True/False)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _Bad(f"field '{key}' is neither JSON nor a Python literal ({value!r:.60})") from None


def _bool(value, key: str) -> bool | None:
    """A JSON bool, or its CSV spelling ("True", "false", "1"); None when absent."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "none", "nan"):
        return None
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    raise _Bad(f"field '{key}' must be true or false (got {value!r})")


def _age(value) -> int | float | None:
    """An age in years from a CSV cell ("68", "68.0"); None when blank."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        age = float(text)
    except ValueError:
        raise _Bad(f"age must be a number (got {text!r})") from None
    return int(age) if age.is_integer() else age


def _patient_folder(path: str) -> str:
    """CheXpert's ``patientNNNNN`` folder: the unit of leakage-free splitting."""
    match = re.search(r"(?:^|/)(patient\d+)/", path)
    if not match:
        raise _Bad(f"no patientNNNNN folder in path {path!r}")
    return match.group(1)


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


def _record(source: str, key: str, group: str, prompt: str, reference: str, meta: dict) -> dict:
    return make_record(source, SOURCES[source], key, group, prompt, reference, meta)


# ----------------------------------------------------------------------------- files and readers


def _file(source: str, path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MedllmError(f"{source}: file not found: {path} (expected {SOURCES[source].files})")
    return path


def _natural(path: Path) -> list:
    """Sort key putting ``part_2`` before ``part_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _shards(source: str, path: Path, pattern: str) -> list[Path]:
    """The files of a source given as one file, a folder (``pattern`` inside it) or a glob."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
    elif Path(path).is_dir():
        files = [p for p in Path(path).glob(pattern) if p.is_file()]
    else:
        files = [Path(path)] if Path(path).is_file() else []
    if not files:
        raise MedllmError(f"{source}: no file at {path} (expected {SOURCES[source].files})")
    return sorted(files, key=_natural)


def _json_array(source: str, path: Path, prefix: str = "item") -> Iterator[tuple[str, object]]:
    """(``file [index]``, object) per element of the array at ijson ``prefix`` (CliCR: ``data.item``), parsed
    incrementally."""
    opener, kind = (b"[", "a JSON array") if prefix == "item" else (b"{", "a JSON object")
    parent = prefix.removesuffix("item").rstrip(".")
    with open(path, "rb") as fh:
        if fh.read(1024).lstrip()[:1] != opener:
            raise MedllmError(f"{path}: not {kind}; expected {SOURCES[source].files}")
        fh.seek(0)
        index = -1
        try:
            for index, obj in enumerate(ijson.items(fh, prefix, use_float=True)):
                yield f"{path} [{parent}[{index}]]" if parent else f"{path} [{index}]", obj
        except ijson.JSONError as exc:
            raise MedllmError(f"{path}: invalid JSON after element {index} ({exc})") from None


def _csv_rows(source: str, path: Path, required: list[str], exact: bool = False) -> Iterator[tuple[str, object]]:
    """(``file:line``, row dict) per CSV row; a row with the wrong number of cells comes as a ``_Bad``."""
    csv.field_size_limit(2**31 - 1)  # discharge notes and reports exceed the 128 kB default
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing or (exact and header != required):
            raise MedllmError(
                f"{path}: unexpected CSV header (missing {', '.join(missing) or 'nothing'}; "
                f"got {', '.join(header[:8]) or 'nothing'}); expected {SOURCES[source].files}"
            )
        line = reader.line_num + 1
        try:
            for values in reader:
                where, line = f"{path}:{line}", reader.line_num + 1
                if not values:
                    continue
                if len(values) != len(header):
                    yield where, _Bad(f"expected {len(header)} cells, got {len(values)}")
                else:
                    yield where, dict(zip(header, values))
        except csv.Error as exc:
            raise MedllmError(f"{path}:{line}: unreadable CSV ({exc})") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            yield number, line.rstrip("\r\n")


Parse = Callable[[object], tuple[list[dict], int]]


def _load(
    source: str,
    path: Path,
    units: Iterable[tuple[str, object]],
    parse: Parse,
    stats: LoadStats | None,
    max_bad_fraction: float,
) -> Iterator[dict]:
    """Parse each source record into output records, skipping and counting malformed ones.

    ``parse(raw)`` returns (records, number dropped on purpose) or
    raises ``_Bad``. The bad share is checked after each record once
    ``EARLY_CHECK`` were read (a wrong file fails early), and at the end
    whatever the count.
    """
    if not 0 <= max_bad_fraction <= 1:
        raise MedllmError(f"max_bad_fraction must be between 0 and 1 (got {max_bad_fraction})")
    stats = stats if stats is not None else LoadStats()
    read = bad = 0
    first_bad = ""

    def check() -> None:
        if bad > max_bad_fraction * read:
            raise MedllmError(
                f"{path}: {bad} of {read} {source} records ({bad / read:.0%}) are malformed, more "
                f"than the {max_bad_fraction:.0%} allowed (first: {first_bad}); "
                f"expected {SOURCES[source].files}"
            )

    try:
        for where, raw in units:
            read += 1
            stats.read += 1
            try:
                if isinstance(raw, _Bad):
                    raise raw
                records, filtered = parse(raw)
            except _Bad as exc:
                bad += 1
                stats.bad += 1
                first_bad = first_bad or f"{where}: {exc}"
                if len(stats.bad_locations) < MAX_BAD_LOCATIONS:
                    stats.bad_locations.append(where)
                if bad <= MAX_BAD_LOCATIONS:
                    log.warning("%s: skipped a malformed %s record: %s", where, source, exc)
                elif bad == MAX_BAD_LOCATIONS + 1:
                    log.warning("%s: further malformed %s records are counted, not logged", path, source)
            else:
                stats.filtered += filtered
                stats.yielded += len(records)
                yield from records
            if read >= EARLY_CHECK:
                check()
    except UnicodeDecodeError as exc:
        raise MedllmError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected {SOURCES[source].files}"
        ) from None
    if read == 0:
        raise MedllmError(f"{path}: no {source} records found; expected {SOURCES[source].files}")
    check()


# ----------------------------------------------------------------------------- EHR-DS-QA


def _ehrdsqa_group(note: dict, key: str) -> str:
    """The patient: ``subject_id``, else the subject prefix of a MIMIC note id (``10000001-DS-1``), else the note."""
    subject = _ident_or_none(note.get("subject_id"))
    if subject:
        return subject
    note_id = _ident_or_none(note.get("note_id"))
    match = re.fullmatch(r"(\d+)-[A-Z]+-\d+", note_id or "")
    return match.group(1) if match else note_id or key


def _ehrdsqa_parse(note) -> tuple[list[dict], int]:
    """One record per QA pair; the prompt is the whole note (``___`` spans kept) and the question.

    A note with one malformed pair is skipped whole: its pairs were generated
    together, so a broken pair signals a broken row. Pairs marked ``correct:
    false`` by the physician are dropped (``filtered``).
    """
    if not isinstance(note, dict):
        raise _Bad("expected a note object")
    key = _ident(note, "original_id", "note_id")  # original_id is unique; one note_id can cover several records
    text = _text(note, "note")
    pairs = _literal(note.get("qa_pairs"), "qa_pairs")
    if not isinstance(pairs, list):
        raise _Bad("field 'qa_pairs' must be a list of {question, answer}")
    group = _ehrdsqa_group(note, key)
    note_verified = _bool(note.get("human_verified"), "human_verified")
    records, filtered = [], 0
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise _Bad(f"qa_pairs[{i}] is not an object")
        question, answer = _text(pair, "question", f"qa_pairs[{i}]."), _text(pair, "answer", f"qa_pairs[{i}].")
        correct = _bool(pair.get("correct"), f"qa_pairs[{i}].correct")
        if correct is False:
            filtered += 1
            continue
        records.append(
            _record(
                "ehrdsqa",
                f"{key}:{i}",
                group,
                f"Discharge note:\n{text}\n\nQuestion: {question}",
                answer,
                {"verified": note_verified if correct is None else correct},
            )
        )
    return records, filtered


def iter_ehrdsqa(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """EHR-DS-QA discharge-note QA (``.csv`` by suffix, else a JSON array such as the verified file).

    Ids are ``ehrdsqa:<original_id>:<pair index in the note's qa_pairs>``, so a
    pair has the same id in the full and the verified file. ``meta.verified``:
    the pair's ``correct`` flag, else the note's ``human_verified``, else None.
    """
    path = _file("ehrdsqa", path)
    units = (
        _csv_rows("ehrdsqa", path, ["note", "qa_pairs"])
        if path.suffix.lower() == ".csv"
        else _json_array("ehrdsqa", path)
    )
    return _load("ehrdsqa", path, units, _ehrdsqa_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- PMC-Patients


def _pmc_parse(patient) -> tuple[list[dict], int]:
    if not isinstance(patient, dict):
        raise _Bad("expected a patient object")
    age = _literal(patient.get("age"), "age") or []
    if not isinstance(age, (list, tuple)) or not all(
        isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[0], (int, float)) for a in age
    ):
        raise _Bad(f"field 'age' must be a list of [value, unit] (got {age!r:.60})")
    similar = _literal(patient.get("similar_patients"), "similar_patients") or {}
    if not isinstance(similar, (dict, list)):
        raise _Bad("field 'similar_patients' must be a dict of patient_uid → 1|2")
    meta = {
        "age": [[float(v), str(u)] for v, u in age],
        "gender": _ident_or_none(patient.get("gender")),
        "similar_patients": [str(uid) for uid in similar],
    }
    prompt = (
        f"Patient summary:\n{_text(patient, 'patient')}\n\nSummarise the key findings and the most likely diagnosis."
    )
    return [
        _record(
            "pmc_patients",
            _ident(patient, "patient_uid"),
            _ident(patient, "PMID"),
            prompt,
            _text(patient, "title"),
            meta,
        )
    ], 0


def iter_pmc_patients(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """PMC-Patients summaries (``.csv`` by suffix, else a JSON array).

    The reference is the case report's *title*: the dataset has no diagnosis
    field, and the title usually names the condition ("... presenting as ...").
    It is a weak target for "key findings and diagnosis", not a written answer.
    Grouped by article ``PMID`` so all patients of one report stay together.
    """
    path = _file("pmc_patients", path)
    units = (
        _csv_rows("pmc_patients", path, ["patient_uid", "PMID", "title", "patient"])
        if path.suffix.lower() == ".csv"
        else _json_array("pmc_patients", path)
    )
    return _load("pmc_patients", path, units, _pmc_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- BioRead

_DASHES = "-" * 30


def _bioread_units(files: list[Path]) -> Iterator[tuple[str, object]]:
    """(``shard:line``, (shard, line, parts)) per record; parts are split at the 30-dash lines.

    A record ends at a line of ``=`` signs, or at a blank line once its fourth
    part (the one-line answer) has text, so blank-line-separated shards load too.
    """
    for shard in files:
        parts: list[list[str]] = [[]]
        start = 0
        for number, line in _lines(shard):
            stripped = line.strip()
            answered = len(parts) == 4 and any(p.strip() for p in parts[3])
            ends = (stripped and set(stripped) == {"="}) or (not stripped and answered)
            if ends:
                if start:
                    yield f"{shard}:{start}", (shard, start, parts)
                parts, start = [[]], 0
            elif stripped == _DASHES:
                parts.append([])
                start = start or number
            elif stripped or start:
                parts[-1].append(line)
                start = start or number
        if start:
            yield f"{shard}:{start}", (shard, start, parts)


def _bioread_parse(raw) -> tuple[list[dict], int]:
    shard, start, parts = raw
    if len(parts) != 4:
        raise _Bad(f"expected 4 parts separated by lines of 30 dashes, got {len(parts)}")
    context, question, candidate_lines, answer_lines = ("\n".join(p).strip() for p in parts)
    if not context:
        raise _Bad("empty context")
    if "XXXXXX" not in question:
        raise _Bad("the question has no XXXXXX blank")
    candidates = {}
    for line in candidate_lines.splitlines():
        entity, _, name = line.partition(":")
        if not re.fullmatch(r"@entity\d+", entity.strip()) or not name.strip():
            raise _Bad(f"candidate line {line!r:.60} is not '@entityN:name'")
        candidates[entity.strip()] = name.strip()
    answer = answer_lines.partition(":")[0].strip()
    if "\n" in answer_lines or answer not in candidates:
        raise _Bad(f"answer {answer_lines!r:.60} is not one '@entityN:name' line naming a candidate")
    listed = "".join(f"{entity}: {name}\n" for entity, name in candidates.items())
    prompt = (
        f"Text:\n{context}\n\nSentence: {question.replace('XXXXXX', BLANK)}\n"
        f"Candidates (entity: name):\n{listed}Fill in the blank ({BLANK}) with one candidate; answer with its name."
    )
    group = hashlib.sha1(context.encode()).hexdigest()[:16]
    return [
        _record(
            "bioread",
            f"{shard.parent.name}/{shard.stem}:{start}",
            group,
            prompt,
            candidates[answer],
            {"candidates": list(candidates.values())},
        )
    ], 0


def iter_bioread(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """BioRead / BioReadLite cloze shards (a ``.txt`` file, a folder of them or a glob).

    The context keeps the ``@entityN`` ids, so the answer must be read, not
    recalled; the prompt lists the candidates with their surface names and the
    reference is the answer's surface name (``meta.candidates``: all names).
    The blank ``XXXXXX`` is shown as ``____``. Grouped by a hash of the context:
    instances cut from the same passage stay together.
    """
    files = _shards("bioread", path, "*.txt")
    return _load("bioread", path, _bioread_units(files), _bioread_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- CliCR


def _clicr_plain(text: str) -> str:
    """``BEG__w1 w2__END`` entity marks → ``w1 w2``."""
    return re.sub(r"BEG__(.+?)__END", r"\1", text).strip()


def _clicr_parse(item) -> tuple[list[dict], int]:
    """One record per query of a document; a document with a malformed query is skipped whole."""
    document = item.get("document") if isinstance(item, dict) else None
    if not isinstance(document, dict) or not isinstance(document.get("qas"), list):
        raise _Bad("expected {source, document: {title, context, qas: [...]}}")
    context = _clicr_plain(_text(document, "context"))
    title = _clicr_plain(document["title"]) if isinstance(document.get("title"), str) else ""
    group = _ident_or_none(item.get("source")) or title or hashlib.sha1(context.encode()).hexdigest()[:16]
    records = []
    for j, qa in enumerate(document["qas"]):
        if not isinstance(qa, dict):
            raise _Bad(f"qas[{j}] is not an object")
        query = _clicr_plain(_text(qa, "query", f"qas[{j}]."))
        if "@placeholder" not in query:
            raise _Bad(f"qas[{j}].query has no @placeholder")
        answers = qa.get("answers")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"].strip() for a in answers)
        ):
            raise _Bad(f"qas[{j}].answers must be a non-empty list of {{text, origin}}")
        first = next((a for a in answers if a.get("origin") == "dataset"), answers[0])
        reference = _clicr_plain(first["text"])
        alternatives = list(dict.fromkeys(_clicr_plain(a["text"]) for a in answers if a is not first))
        heading = f"Case report: {title}\n" if title else ""
        prompt = (
            f"{heading}{context}\n\nQuery: {query.replace('@placeholder', BLANK)}\n"
            f"Fill in the blank ({BLANK}) with a word or phrase."
        )
        records.append(
            _record(
                "clicr",
                _ident(qa, "id"),
                group,
                prompt,
                reference,
                {"alternatives": [a for a in alternatives if a != reference]},
            )
        )
    return records, 0


def iter_clicr(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CliCR cloze queries (a ``*1.0.json`` file, a folder of them or a glob).

    Entity marks are removed and ``@placeholder`` is shown as ``____``. The
    reference is the answer of origin ``dataset`` (the first);
    ``meta.alternatives`` are the UMLS synonyms, for lenient scoring. Grouped by
    the document's ``source`` (its case report).
    """
    files = _shards("clicr", path, "*.json")
    units = (unit for file in files for unit in _json_array("clicr", file, "data.item"))
    return _load("clicr", path, units, _clicr_parse, stats, max_bad_fraction)


# ----------------------------------------------------------------------------- HealthQA


def _healthqa_units(path: Path) -> Iterator[tuple[str, object]]:
    for number, line in _lines(path):
        if line.strip():
            yield f"{path}:{number}", (path, number, line)


def _healthqa_parser() -> Parse:
    """Rows → one record per question: its positive row starts it, its negatives follow (``filtered``)."""
    current = None

    def parse(raw) -> tuple[list[dict], int]:
        nonlocal current
        path, number, line = raw
        cells = line.split("\t", 2)
        if len(cells) != 3 or cells[0].strip() not in ("0", "1"):
            raise _Bad("expected 'label<TAB>question<TAB>answer' with label 0 or 1")
        label, question, answer = cells[0].strip(), cells[1].strip(), cells[2].strip().removesuffix(",").strip()
        if not question or not answer:
            raise _Bad("empty question or answer")
        if label == "0":
            if question != current:
                raise _Bad("a negative answer before its question's positive row")
            return [], 1
        if question == current:
            raise _Bad("a second positive answer for the same question")
        current = question
        group = " ".join(question.lower().split())
        return [_record("healthqa", f"{path.stem}:{number}", group, question, answer, {})], 0

    return parse


def iter_healthqa(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """HealthQA (patient.info) questions with their positive paragraph as reference.

    The answer's trailing ``,`` is removed; the 9 negative paragraphs are
    dropped. Grouped by the question text (lower-cased).
    """
    path = _file("healthqa", path)
    return _load("healthqa", path, _healthqa_units(path), _healthqa_parser(), stats, max_bad_fraction)


# ----------------------------------------------------------------------------- CheXpert


def _label_name(label: str) -> str:
    return "other pleural abnormality" if label == "Pleural Other" else label.lower()


def chexpert_sentence(labels: dict[str, str]) -> str:
    """Labels → one findings statement: positives, then uncertain ("possible (uncertain) …"), then negatives.

    ``No Finding`` positive reads "No finding." (other mentioned labels, such
    as support devices, follow); otherwise ``No Finding`` is not stated.
    """
    others = [(n, s) for n, s in labels.items() if n != "No Finding"]
    parts = (
        [_label_name(n) for n, s in others if s == "positive"]
        + [f"possible (uncertain) {_label_name(n)}" for n, s in others if s == "uncertain"]
        + [f"no {_label_name(n)}" for n, s in others if s == "negative"]
    )
    if labels.get("No Finding") == "positive":
        return "No finding." + (f" Also: {'; '.join(parts)}." if parts else "")
    return f"Findings: {'; '.join(parts)}."


def _patient_line(sex: str, age) -> str:
    """ "Patient: female, 68 years." from what is known (CheXpert writes "Unknown" for a missing sex)."""
    known = [sex.strip().lower()] if sex.strip() and sex.strip().lower() != "unknown" else []
    known += [f"{age} years"] if age is not None else []
    return f"Patient: {', '.join(known)}.\n" if known else ""


def _study_key(path: str) -> str:
    """``…/patientNNNNN/studyN``: one report, shared by the study's frontal and lateral images."""
    return path.rsplit("/", 1)[0]


def _chexpert_parser() -> Parse:
    """One record per study; its further views (same labels) and rows with no label to state are ``filtered``."""
    seen: set[str] = set()

    def parse(row) -> tuple[list[dict], int]:
        path = _text(row, "Path")
        group, study = _patient_folder(path), _study_key(path)
        labels = {}
        for label in CHEXPERT_LABELS:
            cell = row[label].strip()
            if not cell:
                continue
            try:
                labels[label] = CHEXPERT_VALUES[float(cell)]
            except (ValueError, KeyError):
                raise _Bad(f"label '{label}' must be 1.0, 0.0, -1.0 or blank (got {cell!r})") from None
        age = _age(row["Age"])
        stated = {n: s for n, s in labels.items() if n != "No Finding" or s == "positive"}
        if study in seen or not stated:
            return [], 1
        seen.add(study)
        listed = "".join(f"- {n}: {s}\n" for n, s in labels.items())
        prompt = (
            f"Chest radiograph study.\n{_patient_line(row['Sex'], age)}"
            f"CheXpert labels from the report:\n{listed}"
            "Write the findings as one statement; state uncertain labels as uncertain."
        )
        return [_record("chexpert", study, group, prompt, chexpert_sentence(labels), {"labels": labels})], 0

    return parse


def iter_chexpert(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CheXpert ``train.csv`` / ``valid.csv``: a study's labels → a findings statement.

    Blank labels are not mentioned and left out; the reference is built by
    :func:`chexpert_sentence`. A text model cannot read the image: this teaches
    the wording of findings from labels. Grouped by the ``patientNNNNN`` folder.
    """
    path = _file("chexpert", path)
    return _load(
        "chexpert",
        path,
        _csv_rows("chexpert", path, CHEXPERT_COLUMNS, exact=True),
        _chexpert_parser(),
        stats,
        max_bad_fraction,
    )


def _chexpert_plus_parser() -> Parse:
    """One record per study with both a findings and an impression section; others are ``filtered``."""
    seen: set[str] = set()

    def parse(row) -> tuple[list[dict], int]:
        path = _text(row, "path_to_image")
        group, study = _patient_folder(path), _study_key(path)
        findings, impression = row["section_findings"].strip(), row["section_impression"].strip()
        if study in seen or not findings or not impression:
            return [], 1
        seen.add(study)
        prompt = (
            f"Chest radiograph report.\n{_patient_line(row.get('sex', ''), _age(row.get('age')))}"
            f"Findings: {findings}\n\nWrite the impression."
        )
        meta = {"split": row["split"].strip()} if row.get("split", "").strip() else {}
        return [_record("chexpert_plus", study, group, prompt, impression, meta)], 0

    return parse


def iter_chexpert_plus(
    path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """CheXpert Plus reports: the findings section → the impression (``meta.split``: the official split).

    Grouped by the ``patientNNNNN`` folder, the same group as in CheXpert.
    """
    path = _file("chexpert_plus", path)
    units = _csv_rows("chexpert_plus", path, ["path_to_image", "section_findings", "section_impression"])
    return _load("chexpert_plus", path, units, _chexpert_plus_parser(), stats, max_bad_fraction)


# ----------------------------------------------------------------------------- dispatch

LOADERS = {
    "ehrdsqa": iter_ehrdsqa,
    "pmc_patients": iter_pmc_patients,
    "bioread": iter_bioread,
    "clicr": iter_clicr,
    "healthqa": iter_healthqa,
    "chexpert": iter_chexpert,
    "chexpert_plus": iter_chexpert_plus,
}


def iter_records(
    source: str, path: Path, stats: LoadStats | None = None, max_bad_fraction: float = MAX_BAD_FRACTION
) -> Iterator[dict]:
    """The records of ``source`` read from ``path``, one at a time."""
    if source not in LOADERS:
        raise MedllmError(f"unknown source '{source}' (known: {', '.join(LOADERS)})")
    return LOADERS[source](path, stats, max_bad_fraction)
