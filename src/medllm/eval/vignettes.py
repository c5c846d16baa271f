"""Textbook vignettes of common and acute diseases, ranked the way ``/v1/diagnose`` ranks the patient fields.

``assets/common_vignettes.jsonl`` holds presentations written from published diagnostic criteria
before any common-disease profile or prior existed, each with its expected ICD-10-CM diagnosis;
a seeded third is ``held_out`` (never used to choose anything). A vignette is read as the API
reads a :class:`~medllm.serve.schemas.PatientCase` (findings recognised in symptoms and note,
:func:`medllm.serve.phenotype.from_patient`) and scored by
:func:`medllm.serve.phenotype.score_findings`; it is a hit at k when a disease carrying the
expected ``ICD10:`` id (its own or a merged one) ranks within the top k, ties pessimistic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from medllm.errors import MedllmError
from medllm.io import read_jsonl

VIGNETTES = Path(str(files("medllm") / "assets" / "common_vignettes.jsonl"))
FIELDS = {"id": str, "text": str, "sex": str, "symptoms": list, "note": str, "diagnosis": dict, "split": str}
SPLITS = ("tuning", "held_out")


@dataclass(frozen=True)
class VignetteResult:
    id: str
    split: str
    expected: str  # ICD10:<code>
    rank: float  # math.inf when no finding is recognised or the disease is not ranked
    top: tuple[str, ...]  # the best-ranked disease ids
    seconds: float


def load_vignettes(path: str | Path | None = None) -> list[dict]:
    """The vignettes; a clear error naming the line and field for a malformed one."""
    source = Path(path) if path is not None else VIGNETTES
    rows = []
    for number, row in read_jsonl(source):
        for field, kind in FIELDS.items():
            if not isinstance(row.get(field), kind):
                raise MedllmError(f"{source}:{number}: field '{field}' missing or not a {kind.__name__}")
        if row["split"] not in SPLITS or not row["diagnosis"].get("icd10"):
            raise MedllmError(f"{source}:{number}: split must be one of {SPLITS} and diagnosis.icd10 given")
        rows.append(row)
    return rows


def rank_vignette(ranker, cfg, lexicon, vignette: dict, position: dict[str, int], shown: int = 5) -> VignetteResult:
    """One vignette through the patient-fields path of the API (``position``: ``rank.id_positions(ranker)``)."""
    from fastapi import HTTPException

    from medllm.phenotype.rank import rank_of, ranking
    from medllm.serve.phenotype import from_patient, score_findings
    from medllm.serve.schemas import PatientCase

    start = time.perf_counter()
    kb, expected = ranker.kb, f"ICD10:{vignette['diagnosis']['icd10']}"
    fields = {k: vignette[k] for k in ("age", "sex", "symptoms", "note") if k in vignette}
    try:
        case = from_patient(PatientCase(**fields), kb, lexicon)
    except HTTPException:
        return VignetteResult(vignette["id"], vignette["split"], expected, math.inf, (), time.perf_counter() - start)
    _, scores = score_findings(ranker, cfg, case)
    rank = rank_of(scores, position[expected]) if expected in position else math.inf
    top = tuple(str(kb.disease_ids[ranker.rows[j]]) for j in ranking(ranker, scores)[:shown])
    return VignetteResult(vignette["id"], vignette["split"], expected, rank, top, time.perf_counter() - start)


def summarise_vignettes(results: list[VignetteResult]) -> dict:
    """Top-1 / top-5 per split (n each) and the median seconds per vignette."""
    out = {}
    for split in SPLITS:
        ranks = np.array([r.rank for r in results if r.split == split], dtype=float)
        if len(ranks):
            out[split] = {"n": len(ranks), "top1": float(np.mean(ranks <= 1)), "top5": float(np.mean(ranks <= 5))}
    out["ms_median"] = float(np.median([r.seconds for r in results]) * 1000) if results else 0.0
    return out
