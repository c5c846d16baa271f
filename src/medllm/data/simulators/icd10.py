"""ICD-10-CM labels for codes and diagnosis names, looked up in ``simple-icd-10-cm``."""

from __future__ import annotations

import functools
import re

from medllm.data.simulators.common import require

_PIN = "simple-icd-10-cm==1.5.0"
_ICD_CODE = re.compile(r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?")
_SEMANTIC_TAG = re.compile(
    r"\s*\((?:disorder|finding|situation|morphologic abnormality|person|event|procedure)\)\s*$", re.IGNORECASE
)


def strip_semantic_tag(name: str) -> str:
    """A SNOMED CT name without its trailing semantic tag, e.g. ``(disorder)``."""
    return _SEMANTIC_TAG.sub("", name).strip()


def _norm_name(text: str) -> str:
    return " ".join(strip_semantic_tag(text).lower().split())


@functools.lru_cache(maxsize=1)
def _icd_index() -> tuple[dict[str, str], dict[str, str]]:
    """(description → code, inclusion term → code) over ICD-10-CM categories and subcategories.

    Where several codes share a text, the first billable (leaf) code wins,
    else the first in the classification's order.
    """
    cm = require("simple_icd_10_cm", _PIN)
    descriptions: dict[str, str] = {}
    inclusions: dict[str, str] = {}

    def add(index: dict[str, str], text: str, code: str) -> None:
        key = _norm_name(text)
        if key not in index or (cm.is_leaf(code) and not cm.is_leaf(index[key])):
            index[key] = code

    for code in cm.get_all_codes(True):
        if cm.is_category_or_subcategory(code):
            add(descriptions, cm.get_description(code), code)
            for term in cm.get_inclusion_term(code):
                add(inclusions, term, code)
    return descriptions, inclusions


@functools.lru_cache(maxsize=4096)
def icd10_label(code_or_name: str) -> tuple[str, str] | None:
    """An ICD-10-CM ``(code, description)`` for a code or a diagnosis name; None where none exists.

    A code (``J44.1``, ``j441``, ``E78``) must be an ICD-10-CM category or
    subcategory (chapters and blocks are not diagnoses); it is returned dotted
    with its official description. A name matches, case- and
    space-insensitively and without a SNOMED semantic tag such as
    ``(disorder)``, an official description ("Syncope and collapse"), then an
    inclusion term ("Fainting" → R55), then the unspecified form ("Chronic
    sinusitis" → "Chronic sinusitis, unspecified", J32.9). Nothing is guessed
    beyond that: an unknown code or name gives None.
    """
    if not isinstance(code_or_name, str) or not code_or_name.strip():
        return None
    text = code_or_name.strip()
    cm = require("simple_icd_10_cm", _PIN)
    if _ICD_CODE.fullmatch(text.upper()):
        code = text.upper()
        if not cm.is_valid_item(code) or not cm.is_category_or_subcategory(code):
            return None
        code = cm.add_dot(cm.remove_dot(code))
        return code, cm.get_description(code)
    descriptions, inclusions = _icd_index()
    key = _norm_name(text)
    code = descriptions.get(key) or inclusions.get(key) or descriptions.get(f"{key}, unspecified")
    return (code, cm.get_description(code)) if code else None


def icd_meta(label: tuple[str, str] | None) -> dict | None:
    """An :func:`icd10_label` as record metadata: ``{"code", "description"}``, or None."""
    return {"code": label[0], "description": label[1]} if label else None
