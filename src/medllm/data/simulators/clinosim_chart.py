"""A clinosim patient record as note text: the lines both the ED note and the discharge summary write."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from medllm.data.simulators.common import dedupe, join
from medllm.data.simulators.icd10 import icd10_label, icd_meta


def num(value) -> str:
    """A number as a note writes it: ``38.0`` → ``38``."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def pretty(name: str) -> str:
    """A clinosim identifier as words: ``general_medicine`` → ``general medicine``."""
    return str(name).replace("_", " ").strip()


def _sex(code: str) -> str:
    return {"M": "male", "F": "female"}.get(str(code).upper(), "")


def patient_line(patient) -> str:
    return f"Patient: {patient.age}-year-old {_sex(patient.sex) or 'patient'}."


def diagnosis_text(code: str) -> tuple[str, dict | None]:
    """``description (code)`` with the ICD-10-CM description where the code exists, else clinosim's display."""
    label = icd10_label(code)
    if label:
        return f"{label[1]} ({label[0]})", icd_meta(label)
    from clinosim.codes import lookup

    display = lookup("icd-10-cm", code, "en")
    return (f"{display} ({code})" if display and display != code else code), None


def history_lines(patient) -> list[str]:
    from clinosim.codes import lookup

    conditions = []
    for c in patient.chronic_conditions or []:
        label = icd10_label(c.code)
        name = label[1] if label else lookup("icd-10-cm", c.code, "en")
        conditions.append(f"{name} ({c.code}{', ' + c.stage if c.stage else ''})")
    medications = [
        " ".join(p for p in (m.drug_name, m.dose, m.route, m.frequency) if p) for m in patient.current_medications or []
    ]
    allergies = [lookup("snomed-ct", a.allergen_code, "en") for a in patient.allergies or [] if not a.is_nka]
    allergy_text = join(dedupe(allergies), "no known drug allergies")
    return [
        f"Past medical history: {join(conditions)}.",
        f"Home medications: {join(medications)}.",
        f"Allergies: {allergy_text}.",
        f"Social history: smoking {patient.smoking_status or 'unknown'}; alcohol {patient.alcohol_use or 'unknown'}.",
    ]


# ----------------------------------------------------------------------------- first findings and orders

_VITALS = (
    "temperature_celsius",
    "heart_rate",
    "systolic_bp",
    "diastolic_bp",
    "respiratory_rate",
    "spo2",
    "on_supplemental_oxygen",
    "oxygen_flow_rate_lpm",
    "oxygen_delivery_device",
    "pain_score",
    "gcs_score",
)


def first_vitals(records, until: datetime | None) -> SimpleNamespace | None:
    """Each vital sign's first recorded value (before ``until``): one set may carry only some of them."""
    merged: dict = {}
    for v in sorted(records, key=lambda v: v.timestamp):
        if until is not None and v.timestamp > until and merged:
            break
        if not merged:
            merged = {name: getattr(v, name, None) for name in _VITALS}
            merged["on_supplemental_oxygen"] = None if v.spo2 is None else v.on_supplemental_oxygen
            continue
        if merged["systolic_bp"] is None and v.systolic_bp is not None:
            merged["diastolic_bp"] = v.diastolic_bp
        if merged["spo2"] is None and v.spo2 is not None:
            for name in ("on_supplemental_oxygen", "oxygen_flow_rate_lpm", "oxygen_delivery_device"):
                merged[name] = getattr(v, name, None)
        for name in (
            "temperature_celsius",
            "heart_rate",
            "systolic_bp",
            "respiratory_rate",
            "spo2",
            "pain_score",
            "gcs_score",
        ):
            if merged[name] is None:
                merged[name] = getattr(v, name, None)
    return SimpleNamespace(**merged) if merged else None


def vitals_line(v) -> str:
    parts = []
    if v.temperature_celsius is not None:
        parts.append(f"T {num(v.temperature_celsius)} °C")
    if v.heart_rate is not None:
        parts.append(f"HR {v.heart_rate}/min")
    if v.systolic_bp is not None and v.diastolic_bp is not None:
        parts.append(f"BP {v.systolic_bp}/{v.diastolic_bp} mmHg")
    if v.respiratory_rate is not None:
        parts.append(f"RR {v.respiratory_rate}/min")
    if v.spo2 is not None:
        oxygen = (
            f" on {num(v.oxygen_flow_rate_lpm)} L/min O2 ({pretty(v.oxygen_delivery_device)})"
            if v.on_supplemental_oxygen and v.oxygen_flow_rate_lpm
            else " on supplemental O2"
            if v.on_supplemental_oxygen
            else " on room air"
        )
        parts.append(f"SpO2 {num(v.spo2)}%{oxygen}")
    if v.pain_score is not None:
        parts.append(f"pain {v.pain_score}/10")
    if v.gcs_score is not None:
        parts.append(f"GCS {v.gcs_score}")
    return "; ".join(parts)


_UNITS = {"mm[Hg]": "mmHg", "[pH]": "", "10*3/uL": "x10^3/uL", "10*6/uL": "x10^6/uL"}  # UCUM → as written in notes


def first_labs(results, until: datetime | None) -> list[str]:
    """The first result of each analyte (resulted before ``until``), ``name value unit [flag]``."""
    seen, lines = set(), []
    for r in sorted(results, key=lambda r: r.result_datetime):
        if until is not None and r.result_datetime > until:
            break
        if r.lab_name in seen or r.value is None or r.value == "":
            continue
        seen.add(r.lab_name)
        flag = f" [{r.flag}]" if r.flag else ""
        unit = _UNITS.get(r.unit, r.unit or "")
        lines.append(f"{pretty(r.lab_name)} {num(r.value)}{(' ' + unit) if unit else ''}{flag}")
    return lines


def key_orders(record, until: datetime | None) -> dict[str, list[str]]:
    """Initial orders by kind (labs, imaging, treatment); home medications continued on admission are left out."""
    from clinosim.types.encounter import OrderType

    home = {m.drug_name.lower() for m in record.patient.current_medications or []}
    kinds = {
        OrderType.LAB: "labs",
        OrderType.IMAGING: "imaging",
        OrderType.MEDICATION: "treatment",
        OrderType.PROCEDURE: "treatment",
        OrderType.THERAPY: "treatment",
    }
    out: dict[str, list[str]] = {"labs": [], "imaging": [], "treatment": []}
    for order in sorted(record.orders, key=lambda o: o.ordered_datetime):
        kind = kinds.get(order.order_type)
        if kind is None or (until is not None and order.ordered_datetime > until):
            continue
        if order.order_type == OrderType.MEDICATION and order.display_name.lower() in home:
            continue
        out[kind].append(pretty(order.display_name))
    return {kind: dedupe(names) for kind, names in out.items()}
