"""clinosim encounters as records: ED presentations → differential, discharge summaries → Q&A.

The simulation is clinosim's own (:func:`simulate_clinosim`); the notes are
rendered here from its structured record, field by field, so every reference
is a field clinosim simulated.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace

from medllm.data.simulators.clinosim_chart import (
    diagnosis_text,
    first_labs,
    first_vitals,
    history_lines,
    key_orders,
    patient_line,
    pretty,
    vitals_line,
)
from medllm.data.simulators.common import check_size, dedupe, join, offline_source, require
from medllm.data.simulators.icd10 import icd10_label
from medllm.data.sources import LoadStats, make_record
from medllm.errors import MedllmError

log = logging.getLogger(__name__)

CLINOSIM_VERSION = "0.6.5"
CLINOSIM_TIME_RANGE = ("2024-04-01", "2025-03-31")  # clinosim's own default period, fixed (its CLI uses "today")
PRESENTATION_HOURS = 6  # an admission's ED phase: its first vitals, and the labs resulted / orders placed this early

_LICENSE = f"MIT (license of the clinosim {CLINOSIM_VERSION} package; the output is synthetic)"
_PIN = f"clinosim=={CLINOSIM_VERSION}"
CLINOSIM_SOURCES = {
    "clinosim_ed": offline_source("diagnosis", _LICENSE, _PIN, f"{__name__}.iter_clinosim"),
    "clinosim_dsqa": offline_source("qa", _LICENSE, _PIN, f"{__name__}.iter_clinosim"),
}


def _record(source: str, key: str, group: str, prompt: str, reference: str, meta: dict) -> dict:
    return make_record(source, CLINOSIM_SOURCES[source], key, group, prompt, reference, meta)


def simulate_clinosim(n_patients: int, seed: int = 0, time_range: tuple[str, str] = CLINOSIM_TIME_RANGE):
    """clinosim's population run (``clinosim.api.run_beta``): a ``CIFDataset`` of every simulated encounter.

    ``n_patients`` is the catchment population (clinosim draws about that
    many persons, and only those who fall ill reach the hospital);
    ``random_seed`` is clinosim's own master seed, from which it derives every
    per-phase and per-patient stream, so a (size, seed, period) triple always
    gives the same dataset. clinosim's progress lines are logged at DEBUG.
    """
    check_size(n_patients, seed)
    api = require("clinosim.api", _PIN)
    config = api.SimulatorConfig(
        catchment_population=n_patients, random_seed=seed, country="US", time_range=tuple(time_range)
    )
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        dataset = api.run_beta(config)
    log.debug("clinosim run_beta(population=%d, seed=%d):\n%s", n_patients, seed, chatter.getvalue())
    return dataset


# ----------------------------------------------------------------------------- ED presentation → differential


def _differential(record) -> list[tuple[str, str]]:
    """clinosim's ranked differential at presentation for an admitted disease (its Bayesian engine's prior
    ranking from the disease protocol, age-adjusted): [(code, description)]; [] where clinosim has none."""
    diseases = record.condition_event.ground_truth_diseases
    if not diseases:
        return []
    try:
        from clinosim.modules.diagnosis.engine import initialize_differential
        from clinosim.modules.disease.protocol import load_disease_protocol

        protocol = load_disease_protocol(diseases[0])
    except (FileNotFoundError, ValueError, ImportError):
        return []
    if not protocol.diagnostic or "differential" not in protocol.diagnostic:
        return []
    differential = initialize_differential(diseases[0], record.patient.age, protocol_diagnostic=protocol.diagnostic)
    out = []
    for candidate in differential.candidates:
        label = icd10_label(candidate.icd_code)
        out.append((candidate.icd_code, label[1] if label else candidate.display_name))
    return out


def _ed_prompt(record, until: datetime | None) -> str:
    """The presentation: patient, complaint, triage, history, first vitals and labs (those before ``until``)."""
    encounter = record.encounters[0]
    vitals = first_vitals(record.vital_signs, until)
    labs = first_labs(record.lab_results, until)
    lines = [
        "Emergency department presentation.",
        patient_line(record.patient),
        f"Chief complaint: {encounter.chief_complaint}.",
    ]
    triage = encounter.triage_data
    if triage is not None and triage.level:
        lines.append(f"Triage: {triage.level_system or 'ESI'} level {triage.level}; arrival {triage.arrival_mode}.")
    lines += history_lines(record.patient)
    lines.append(f"Vital signs: {(vitals_line(vitals) if vitals else '') or 'not recorded'}.")
    lines.append(f"Initial labs: {join(labs, 'none resulted')}.")
    lines.append(
        "\nGive a ranked differential diagnosis, the most likely diagnosis, and the next steps "
        "(disposition and key orders)."
    )
    return "\n".join(lines)


def _ed_disposition(encounter, admitted: bool) -> str:
    if admitted:
        department = pretty(encounter.department_id or "")
        return f"admit to inpatient care ({department})" if department else "admit to inpatient care"
    value = getattr(encounter.discharge_disposition, "value", encounter.discharge_disposition) or "home"
    return "discharge home" if value == "home" else pretty(value)


def _ed_reference(differential: list[tuple[str, str]], final: str, disposition: str, orders: dict) -> str:
    reference = []
    if differential:
        reference.append(
            "Differential diagnosis (ranked): "
            + "; ".join(f"{i}. {name} ({c})" for i, (c, name) in enumerate(differential, 1))
            + "."
        )
    reference.append(f"Most likely diagnosis: {final}.")
    reference.append(f"Disposition: {disposition}.")
    order_text = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in orders.items() if names)
    reference.append(f"Key orders: {order_text or 'none'}.")
    return "\n".join(reference)


def _ed_record(record, run: str, group: str) -> dict | None:
    """The ``clinosim_ed`` record of an encounter with an ED note; None where its diagnosis did not converge."""
    from clinosim.types.encounter import EncounterType

    encounter = record.encounters[0]
    admitted = encounter.encounter_type == EncounterType.INPATIENT
    code = record.clinical_diagnosis.discharge_diagnosis_code
    if not code or code == "R69":  # clinosim's "did not converge" sentinel (Illness, unspecified)
        return None
    until = encounter.admission_datetime + timedelta(hours=PRESENTATION_HOURS) if admitted else None
    prompt = _ed_prompt(record, until)
    final, icd = diagnosis_text(code)
    differential = _differential(record) if admitted else []
    orders = key_orders(record, until)
    disposition = _ed_disposition(encounter, admitted)
    meta = {
        "icd10": icd,
        "differential": [c for c, _ in differential],
        "admitted": admitted,
        "disposition": disposition,
        "severity": encounter.severity or None,
        "ground_truth": list(record.condition_event.ground_truth_diseases),
        "diagnosis_correct": bool(record.clinical_diagnosis.diagnosis_correct),
        "patient_id": record.patient.patient_id,
        "encounter_id": encounter.encounter_id,
    }
    reference = _ed_reference(differential, final, disposition, orders)
    return _record("clinosim_ed", f"{run}:{encounter.encounter_id}", group, prompt, reference, meta)


# ----------------------------------------------------------------------------- discharge summary → Q&A


def _follow_up(record) -> str:
    """The follow-up instruction clinosim's discharge summary states: the disease protocol's own, else the
    disease-specific entry of clinosim's discharge instructions, else the baseline one."""
    from clinosim.modules.disease.protocol import load_disease_protocol
    from clinosim.modules.document.reference_data_loaders import load_discharge_instructions

    diseases = record.condition_event.ground_truth_diseases
    disease = diseases[0] if diseases else ""
    try:
        protocol = load_disease_protocol(disease) if disease else None
    except (FileNotFoundError, ValueError):
        protocol = None
    narrative = getattr(protocol, "narrative", None)
    own = getattr(narrative, "discharge_instructions", None)
    own = own.get("follow_up") if isinstance(own, dict) else getattr(own, "follow_up", None)
    data = load_discharge_instructions()
    for entry in (
        own,
        ((data.get("disease_specific") or {}).get(disease) or {}).get("follow_up"),
        (data.get("baseline") or {}).get("follow_up"),
    ):
        if isinstance(entry, dict) and entry.get("en"):
            return entry["en"].strip()
    return ""


def _medication_text(item: dict) -> str:
    dose = str(item.get("dose") or "").strip()
    parts = [str(item.get("drug_name") or "").strip(), dose]
    for key in ("route", "frequency"):
        value = str(item.get(key) or "").strip()
        if value and value.lower() not in dose.lower().split():
            parts.append(value)
    return " ".join(p for p in parts if p)


def _discharge_fields(record) -> SimpleNamespace:
    """The fields a discharge summary states, as its note writes them and its questions answer them."""
    from clinosim.simulator.complications import complication_names

    encounter = record.encounters[0]
    admitted_on, discharged_on = encounter.admission_datetime.date(), encounter.discharge_datetime.date()
    los = (discharged_on - admitted_on).days
    diagnosis, icd = diagnosis_text(record.clinical_diagnosis.discharge_diagnosis_code)
    medications = dedupe(
        _medication_text(i) for i in (record.discharge_prescription.items if record.discharge_prescription else [])
    )
    complications = dedupe(pretty(n) for n in complication_names(record.complications_occurred))
    return SimpleNamespace(
        admitted_on=admitted_on,
        discharged_on=discharged_on,
        los_text=f"{los} day{'' if los == 1 else 's'}",
        diagnosis=diagnosis,
        icd=icd,
        medications=medications,
        complications=complications,
        complication_text="; ".join(complications) if complications else "No complications were recorded.",
        procedures=dedupe(pretty(p.procedure_type) for p in record.procedures),
        follow_up=_follow_up(record),
    )


def _discharge_note(record, f: SimpleNamespace) -> str:
    encounter = record.encounters[0]
    course = [f"Admitted to {pretty(encounter.department_id or '') or 'hospital'}."]
    if record.icu_transferred:
        course.append(
            f"Transferred to the ICU on hospital day {record.icu_transferred_day + 1}."
            if record.icu_transferred_day >= 0
            else "Transferred to the ICU."
        )
    course.append(f"Procedures: {join(f.procedures)}.")
    course.append(f"Complications: {f.complication_text}." if f.complications else f.complication_text)
    return "\n".join(
        [
            "Discharge summary",
            patient_line(record.patient),
            f"Admission date: {f.admitted_on.isoformat()}. Discharge date: {f.discharged_on.isoformat()}.",
            f"Length of stay: {f.los_text}.",
            f"Reason for admission: {encounter.chief_complaint}.",
            *history_lines(record.patient),
            f"Hospital course: {' '.join(course)}",
            f"Discharge diagnosis: {f.diagnosis}.",
            f"Discharge medications: {join(f.medications)}.",
            f"Discharge disposition: {pretty(getattr(encounter.discharge_disposition, 'value', 'home') or 'home')}.",
            *([f"Follow-up: {f.follow_up}"] if f.follow_up else []),
        ]
    )


def _dsqa_records(record, run: str, group: str) -> list[dict]:
    """The ``clinosim_dsqa`` records of a discharge summary: 4-6 questions answered by its fields verbatim."""
    encounter = record.encounters[0]
    f = _discharge_fields(record)
    note = _discharge_note(record, f)
    pairs = [
        ("reason_for_admission", "What was the reason for admission?", encounter.chief_complaint, None),
        ("discharge_diagnosis", "What was the discharge diagnosis?", f.diagnosis, f.icd),
        ("length_of_stay", "How long was the patient in hospital?", f.los_text, None),
        ("complications", "Were there any complications during the hospital stay?", f.complication_text, None),
    ]
    if f.medications:
        pairs.append(
            ("discharge_medications", "What medications was the patient discharged on?", "; ".join(f.medications), None)
        )
    if f.follow_up:
        pairs.append(("follow_up", "What follow-up was arranged after discharge?", f.follow_up, None))
    records = []
    for key, question, answer, label in pairs:
        meta = {
            "question_type": key,
            "icd10": label,
            "patient_id": record.patient.patient_id,
            "encounter_id": encounter.encounter_id,
            "verified": True,
        }
        records.append(
            _record(
                "clinosim_dsqa",
                f"{run}:{encounter.encounter_id}:{key}",
                group,
                f"Discharge note:\n{note}\n\nQuestion: {question}",
                answer,
                meta,
            )
        )
    return records


# ----------------------------------------------------------------------------- the generator


def clinosim_records(
    dataset, run: str, sources: Iterable[str] = ("clinosim_ed", "clinosim_dsqa"), stats: LoadStats | None = None
) -> Iterator[dict]:
    """The records of a clinosim dataset (see :func:`iter_clinosim`); ``run`` qualifies ids and groups."""
    sources = set(sources)
    unknown = sources - {"clinosim_ed", "clinosim_dsqa"}
    if unknown:
        raise MedllmError(
            f"unknown clinosim source(s) {', '.join(sorted(unknown))} (known: clinosim_ed, clinosim_dsqa)"
        )
    stats = stats if stats is not None else LoadStats()
    for record in dataset.patients:
        stats.read += 1
        if not record.encounters:
            stats.filtered += 1
            continue
        kinds = {d.task_type for d in record.documents}
        group = f"{run}:{record.patient.patient_id}"
        out: list[dict] = []
        if "clinosim_ed" in sources and "ed_note" in kinds:
            ed = _ed_record(record, run, group)
            out += [ed] if ed else []
        if "clinosim_dsqa" in sources and "discharge_summary" in kinds and record.encounters[0].discharge_datetime:
            out += _dsqa_records(record, run, group)
        if not out:
            stats.filtered += 1  # outpatient visits, deaths (no discharge summary), unresolved diagnoses
        stats.yielded += len(out)
        yield from out


def iter_clinosim(
    n_patients: int,
    seed: int = 0,
    sources: Iterable[str] = ("clinosim_ed", "clinosim_dsqa"),
    stats: LoadStats | None = None,
    time_range: tuple[str, str] = CLINOSIM_TIME_RANGE,
) -> Iterator[dict]:
    """Records from a clinosim population of ``n_patients`` people simulated with ``seed``.

    ``clinosim_ed`` (task ``diagnosis``): per encounter with an ED note, the
    presentation → ranked differential (admissions only), the ICD-10-CM final
    diagnosis, disposition and key orders; encounters whose diagnosis did not
    converge are dropped. ``clinosim_dsqa`` (task ``qa``): per living
    discharge, the summary and 4-6 questions answered by its fields verbatim
    (``meta.verified``: correct by construction). clinosim's own narratives
    are not used: they miss fields this structured rendering keeps.

    Ids are ``<source>:s<seed>-p<n>:<encounter id>[:<question>]``; the group
    is ``s<seed>-p<n>:<patient id>`` (clinosim restarts patient numbers in
    every run). ``stats``: ``read`` = simulated encounters, ``filtered`` =
    those giving no record. The run is held in memory: for large corpora use
    several seeds rather than one huge population.
    """
    check_size(n_patients, seed)
    sources = tuple(sources)

    def generate() -> Iterator[dict]:  # the simulation runs on the first next(), like the file loaders' reading
        dataset = simulate_clinosim(n_patients, seed, time_range)
        yield from clinosim_records(dataset, f"s{seed}-p{n_patients}", sources, stats)

    return generate()
