"""The HPO side of ``/v1/diagnose``: the findings a request holds, and every disease ranked from them.

An HPO list or a phenopacket is read into findings: old ids are mapped through the
knowledge base's alias map (and the finding says so); unknown ids, or no present finding,
are a 422 naming them. The patient-fields shape gets its findings recognised in its symptoms
and note (:func:`medllm.phenotype.findings.recognise`); none recognised is a 422 naming those
fields. The configured ranker (with its pretest prior for the patient's age and sex) scores
every disease of the knowledge base, rare and common; the top ``top_k`` come back with a
softmax confidence and their term evidence, and the emergency of every red flag raised is
named in the differential with its flag, wherever it ranks. With a fitted (or configured)
fusion weight above 0 and a backend that scores, the model re-ranks the top ``rerank.top_k``
(:mod:`medllm.phenotype.rerank`; it cannot add a disease), the rest after. The model's text
is the rationale: when it cannot be reached the ranking still returns, with a note saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from fastapi import HTTPException

from medllm.config import PhenotypeConfig
from medllm.data.phenopackets import parse_phenopacket
from medllm.phenotype.explain import TermMatch, confidences
from medllm.phenotype.findings import recognise
from medllm.phenotype.kb import KnowledgeBase
from medllm.phenotype.rank import CaseTerms, Ranker, case_scores, case_terms, ranking
from medllm.phenotype.rerank import case_vignette, score_case, top_candidates
from medllm.phenotype.series import series_groups, series_name
from medllm.prompts import build_messages
from medllm.safety import RedFlag
from medllm.serve.backends import BackendError
from medllm.serve.dependencies import ServeState
from medllm.serve.schemas import (
    Diagnosis,
    HpoCase,
    PatientCase,
    PhenopacketRequest,
    RecognisedFinding,
    TermEvidence,
    patient_phrase,
)

log = logging.getLogger(__name__)


@dataclass
class PhenotypeCase:
    """What was read from an HPO-shaped request."""

    findings: list[RecognisedFinding]
    age: float | None
    sex: str
    note: str = ""
    text: str | None = None  # the patient as written, when the request had one (shown to the model)

    def ids(self) -> tuple[list[str], list[str]]:
        return [f.term_id for f in self.findings if not f.excluded], [f.term_id for f in self.findings if f.excluded]

    def vignette(self) -> str:
        if self.text is not None:
            return self.text
        present, absent = ([f.label for f in self.findings if f.excluded is e] for e in (False, True))
        text = f"{patient_phrase(self.age, self.sex)} presents with {', '.join(present)}."
        if absent:
            text += f" Excluded: {', '.join(absent)}."
        return text + (f" Note: {self.note}" if self.note else "")


def read_findings(kb: KnowledgeBase, items: list[tuple[str, str, bool]], field: str) -> list[RecognisedFinding]:
    """Findings from (where, HPO id, excluded) triples; 422 naming every unknown id, or no present finding."""
    findings, unknown = [], []
    for where, term, excluded in items:
        try:
            column = kb.term_index(term)
        except KeyError:
            unknown.append(f"{where}: unknown HPO id {term} (not in HPO {kb.release})")
            continue
        live = str(kb.term_ids[column])
        note = None if live == term else f"{term} is an obsolete or alternative HPO id, read as {live}"
        label = str(kb.term_names[column])
        findings.append(
            RecognisedFinding(term_id=live, label=label, excluded=excluded, input=where, text=term, note=note)
        )
    if unknown:
        raise HTTPException(422, "; ".join(unknown))
    return require_present(findings, field)


def require_present(findings: list[RecognisedFinding], field: str) -> list[RecognisedFinding]:
    """``findings``; a 422 naming ``field`` when none is present (none at all, or every one excluded)."""
    if not findings:
        raise HTTPException(422, f"{field}: no HPO finding recognised; write findings as HPO terms, synonyms or ids")
    if all(f.excluded for f in findings):
        raise HTTPException(422, f"{field}: every finding is excluded; at least one present finding is needed to rank")
    return findings


def from_hpo(case: HpoCase, kb: KnowledgeBase) -> PhenotypeCase:
    items = [(f"hpo.{i}.id", finding.id, finding.excluded) for i, finding in enumerate(case.hpo)]
    return PhenotypeCase(read_findings(kb, items, "hpo"), case.age, case.sex, case.note)


def from_phenopacket(request: PhenopacketRequest, kb: KnowledgeBase) -> PhenotypeCase:
    """The phenopacket's phenotypic features (``type.id``, ``excluded``), subject sex and age at last encounter."""
    doc = request.phenopacket
    try:
        parsed = parse_phenopacket(doc)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise HTTPException(422, f"phenopacket: not a usable Phenopacket v2 document ({exc})") from None
    first: dict[str, int] = {}
    for i, feature in enumerate(doc["phenotypicFeatures"]):
        first.setdefault(feature["type"]["id"], i)
    items = [(f"phenopacket.phenotypicFeatures.{first[t]}.type.id", t, False) for t in parsed.observed]
    items += [(f"phenopacket.phenotypicFeatures.{first[t]}.type.id", t, True) for t in parsed.excluded]
    findings = read_findings(kb, items, "phenopacket.phenotypicFeatures")
    return PhenotypeCase(findings, parsed.age_years, parsed.sex or "unknown")


def from_patient(case: PatientCase, kb: KnowledgeBase, lexicon) -> PhenotypeCase:
    """The findings recognised in the patient's symptoms and note; a 422 naming both fields when none is present."""
    findings = require_present(recognised(case, kb, lexicon), "symptoms, note")
    return PhenotypeCase(findings, case.age, case.sex, case.note, text=case.vignette())


def recognised(case: PatientCase, kb: KnowledgeBase, lexicon) -> list[RecognisedFinding]:
    """HPO findings recognised in the symptoms (each on its own) and the note."""
    found = [(f"symptoms.{f.item}", f) for f in recognise(case.symptoms, kb, lexicon=lexicon)]
    if case.note:
        found += [("note", f) for f in recognise(case.note, kb, lexicon=lexicon)]
    return [
        RecognisedFinding(
            term_id=f.term_id,
            label=f.label,
            excluded=f.excluded,
            input=where,
            text=f.text,
            span=f.span,
            note=None if f.source == "name" else f"matched by {f.source}",
        )
        for where, f in found
    ]


def _evidence(kb: KnowledgeBase, match: TermMatch) -> TermEvidence:
    return TermEvidence(
        patient_term=str(kb.term_ids[match.case_term]),
        patient_label=str(kb.term_names[match.case_term]),
        disease_term=str(kb.term_ids[match.disease_term]),
        disease_label=str(kb.term_names[match.disease_term]),
        match=match.match,
        frequency=match.frequency,
        patient_excluded=match.excluded,
    )


def fused_top(state: ServeState, case: PhenotypeCase, terms: CaseTerms, scores: np.ndarray):
    """The phenotype top K (``rerank.top_k``) in the fused order with their confidences (softmax over the K, the
    fitted temperature); None when no fusion is served or the backend cannot score (Ollama) or failed to."""
    if not state.reranks:
        return None
    cfg = state.config.rerank
    top = top_candidates(state.ranker, state.explainer, terms, scores, cfg.top_k)
    present, absent = ([f.label for f in case.findings if f.excluded is e] for e in (False, True))
    vignette = case_vignette(present, absent, None if case.sex == "unknown" else case.sex, case.age)
    try:
        scored = score_case(state.engine.loglikelihoods, vignette, top, cfg.seed)
    except BackendError as exc:  # a remote server that failed mid-way: the phenotype order, said in the notes
        log.warning("candidate scoring failed, phenotype ranking returned: %s", exc)
        return None
    order = state.fusion.order(scored)
    return top.positions[order], state.fusion.confidences(scored)[order]


def score_findings(ranker: Ranker, cfg: PhenotypeConfig, case: PhenotypeCase) -> tuple[CaseTerms, np.ndarray]:
    """The case's term columns, and every ranked disease's score (the prior of the case's age and sex included)."""
    terms = case_terms(ranker.kb, *case.ids())
    if not cfg.use_excluded:
        terms = replace(terms, excluded=np.zeros(0, np.int64))
    return terms, case_scores(ranker, terms, case.age, case.sex)


def _icd10(kb: KnowledgeBase, row: int) -> str | None:
    return next((i.removeprefix("ICD10:") for i in kb.ids_of(row) if i.startswith("ICD10:")), None)


def _diagnosis(state: ServeState, terms: CaseTerms, scores, probability, j: int, rank: int, flag=None) -> Diagnosis:
    """Ranked position ``j`` as a differential entry, with its term evidence."""
    kb, row = state.ranker.kb, int(state.ranker.rows[j])
    matches = state.explainer.evidence(row, terms.observed, terms.excluded)
    n_for = sum(not m.excluded for m in matches)
    rationale = f"{n_for} of {len(terms.observed)} present findings match its annotated terms"
    if len(matches) > n_for:
        rationale += f"; the patient lacks {len(matches) - n_for} finding(s) it has"
    return Diagnosis(
        rank=rank,
        name=str(kb.disease_names[row]),
        disease_id=str(kb.disease_ids[row]),
        icd10=_icd10(kb, row),
        confidence=round(float(probability[j]), 4),
        score=round(float(scores[j]), 4),
        rationale=rationale + (f"; red flag: {flag.message}" if flag else ""),
        red_flag=flag.rule if flag else None,
        term_evidence=[_evidence(kb, m) for m in matches],
    )


def emergency_positions(state: ServeState, flags: list[RedFlag]) -> dict[int, RedFlag]:
    """Ranked position of each flag's emergency (``RedFlag.disease``) that the ranker ranks."""
    found = {}
    for flag in flags:
        row = state.disease_rows.get(flag.disease) if flag.disease else None
        if row is not None:
            at = np.searchsorted(state.ranker.rows, row)
            if at < len(state.ranker.rows) and state.ranker.rows[at] == row:
                found.setdefault(int(at), flag)
    return found


def rank_findings(
    state: ServeState, case: PhenotypeCase, top_k: int, flags: list[RedFlag] = ()
) -> tuple[list[Diagnosis], float, bool, str]:
    """The ``top_k`` diseases for the case's findings, with confidences and evidence; the top score; whether
    the scores separate the diseases at all (all equal: the findings match nothing more than any other); and the
    ranking used: ``fused`` (the model re-ranked the top K, the rest after) or ``phenotype``. The emergency of
    each of ``flags`` is in the list with its flag: one ranked lower takes the place of the lowest entry, the
    best match always kept (the list grows only when the emergencies outnumber ``top_k - 1``)."""
    cfg = state.config.phenotype
    terms, scores = score_findings(state.ranker, cfg, case)
    probability = confidences(scores, cfg.confidence_temperature)
    order = ranking(state.ranker, scores)
    fused = fused_top(state, case, terms, scores)
    if fused is not None:
        positions, fused_confidence = fused
        probability[positions] = fused_confidence  # the rest keep their phenotype confidence
        order = np.concatenate([positions, order[len(positions) :]])
    emergencies = emergency_positions(state, flags)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    top = [int(j) for j in order[:top_k]]
    below = [j for j in emergencies if j not in top]  # flagged emergencies ranked after the top_k
    shown = top[: max(1, top_k - len(below))] + sorted(below, key=lambda j: rank[j])
    differential = [_diagnosis(state, terms, scores, probability, j, int(rank[j]), emergencies.get(j)) for j in shown]
    used = "phenotype" if fused is None else "fused"
    return differential, float(scores.max()), bool(np.ptp(scores) > 0), used


def mark_series(differential: list[Diagnosis]) -> tuple[list[Diagnosis], list[str]]:
    """The differential with ``series`` set where two or more entries are numbered subtypes of one series, and a
    line per such series for the clinician."""
    groups = series_groups(np.array([d.name for d in differential], dtype=object))
    marked, notes = list(differential), []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        stem = series_name(differential[members[0]].name)
        for i in members:
            marked[i] = differential[i].model_copy(update={"series": stem})
        ranks = ", ".join(str(differential[i].rank) for i in members)
        notes.append(
            f"{stem}: {len(members)} numbered subtypes in this list (ranks {ranks}). Subtypes of one series differ "
            "by gene more than by findings; genetic testing tells them apart."
        )
    return marked, notes


def model_rationale(
    state: ServeState, case: PhenotypeCase, differential: list[Diagnosis]
) -> tuple[str | None, int, str | None]:
    """The model's text on the ranked list (it does not change the order), its token count, and, when the model
    is unavailable, why (naming the backend, never the patient's text) in place of the text."""
    candidates = [f"{d.name} ({d.disease_id})" for d in differential]
    messages = build_messages(case.vignette(), candidates, len(differential))
    try:
        text, n_tokens = state.engine.complete(messages)
    except BackendError as exc:
        log.warning("model unavailable, phenotype ranking returned without a rationale: %s", exc)
        return None, 0, str(exc)
    return text, n_tokens, None
