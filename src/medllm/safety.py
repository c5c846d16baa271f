"""Safety checks on the clinician's input, independent of the model.

Red flags are rules over the presenting text and vitals: the model never sees
them and cannot talk them away. Instruction-override attempts in patient
fields are refused before anything reaches the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCLAIMER = ("Decision support for clinicians only: not a diagnosis and not medical advice. "
              "Verify every suggestion against the clinical picture and local guidelines.")
URGENT_CARE = "Red flag present: arrange emergency assessment now (call emergency services if outside hospital)."


@dataclass(frozen=True)
class RedFlag:
    rule: str
    message: str


def _has(text: str, *patterns: str) -> bool:
    return any(re.search(p, text) for p in patterns)


def red_flags(text: str, vitals: dict | None = None) -> list[RedFlag]:
    """Emergencies suggested by ``text`` (symptoms, history, note) and ``vitals``."""
    t = text.lower()
    v = {k: val for k, val in (vitals or {}).items() if val is not None}
    flags = []
    chest = _has(t, r"chest (pain|pressure|tightness)")
    if chest and _has(t, r"diaphore|sweat", r"radiat", r"short(ness)? of breath|dyspn", r"nause", r"jaw|left arm"):
        flags.append(RedFlag("acute_coronary_syndrome", "Chest pain with autonomic or radiating features: possible acute coronary syndrome."))
    if _has(t, r"thunderclap", r"worst headache", r"sudden(ly)?( onset)?( severe)? headache"):
        flags.append(RedFlag("subarachnoid_haemorrhage", "Sudden severe headache: possible subarachnoid haemorrhage."))
    if _has(t, r"facial droop", r"slurred speech", r"one[- ]sided weakness|hemipar|unilateral weakness",
            r"sudden (loss of )?vision", r"aphasia"):
        flags.append(RedFlag("stroke", "Focal neurological deficit: possible stroke (time-critical)."))
    fever = _has(t, r"fever|pyrexi|rigors") or v.get("temperature_c", 37) >= 38.3
    sick = (_has(t, r"confus", r"mottl", r"hypotens", r"altered mental")
            or v.get("systolic_bp", 120) < 90 or v.get("heart_rate", 80) > 130 or v.get("respiratory_rate", 16) >= 22)
    if fever and sick:
        flags.append(RedFlag("sepsis", "Fever with signs of organ dysfunction: possible sepsis."))
    if v.get("spo2", 100) < 92 or _has(t, r"cyanos"):
        flags.append(RedFlag("hypoxaemia", "Low oxygen saturation or cyanosis."))
    if _has(t, r"(throat|tongue|lip)s? swell", r"anaphyla") and _has(t, r"breath|wheez|stridor|hives|urticaria|anaphyla"):
        flags.append(RedFlag("anaphylaxis", "Airway swelling with breathing or skin signs: possible anaphylaxis."))
    if _has(t, r"haematemesis|hematemesis|vomiting blood", r"melaena|melena|black,? tarry stool"):
        flags.append(RedFlag("gi_bleed", "Signs of gastrointestinal bleeding."))
    if _has(t, r"suicid", r"self[- ]harm", r"wants? to die"):
        flags.append(RedFlag("suicide_risk", "Risk of self-harm: urgent mental-health assessment."))
    return flags


INJECTION = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?)"
    r"|disregard (the |your )?(system|previous) (prompt|instructions)"
    r"|you are now\b|new system prompt|<\|im_start\|>|<\|im_end\|>|\[/?INST\]|<<SYS>>",
    re.IGNORECASE)


def injection_attempt(text: str) -> bool:
    """Text that tries to override the system instructions or forge chat-template turns."""
    return bool(INJECTION.search(text))
