"""The API's pydantic request and response models (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from medllm.safety import DISCLAIMER

Item = Annotated[str, Field(min_length=1, max_length=200)]
TopK = Annotated[int, Field(ge=1, le=50, description="length of the returned differential")]
Sex = Literal["female", "male", "other", "unknown"]


def patient_phrase(age: float | None, sex: str) -> str:
    """'A 54-year-old male patient', or 'A male patient' when the age is not given."""
    return f"A {age:g}-year-old {sex} patient" if age is not None else f"A {sex} patient"


class Vitals(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heart_rate: float | None = Field(None, ge=10, le=300, description="beats/min")
    systolic_bp: float | None = Field(None, ge=30, le=300, description="mmHg")
    diastolic_bp: float | None = Field(None, ge=10, le=200, description="mmHg")
    temperature_c: float | None = Field(None, ge=25, le=45)
    respiratory_rate: float | None = Field(None, ge=2, le=80, description="breaths/min")
    spo2: float | None = Field(None, ge=30, le=100, description="%")


class PatientCase(BaseModel):
    """One patient: 1–40 symptoms, up to 40 history items and medications (each 1–200
    characters), vitals within physiological ranges, a note up to 4,000 characters."""

    model_config = ConfigDict(extra="forbid")
    age: float | None = Field(None, ge=0, le=130, description="years")
    sex: Sex = "unknown"
    symptoms: list[Item] = Field(min_length=1, max_length=40, description="presenting symptoms and findings")
    history: list[Item] = Field(default_factory=list, max_length=40)
    medications: list[Item] = Field(default_factory=list, max_length=40)
    vitals: Vitals | None = None
    note: str = Field("", max_length=4000, description="free-text clinical note")
    top_k: TopK = 5

    def vignette(self) -> str:
        text = f"{patient_phrase(self.age, self.sex)} presents with {', '.join(self.symptoms)}."
        if self.history:
            text += f" History: {', '.join(self.history)}."
        if self.medications:
            text += f" Medications: {', '.join(self.medications)}."
        if self.note:
            text += f" Note: {self.note}"
        return text


class HpoFinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^HP:[0-9]{7}$", description="an HPO term id, e.g. HP:0001250")
    excluded: bool = Field(False, description="explicitly absent in the patient")


class HpoCase(BaseModel):
    """One patient as HPO terms (1–300), present or excluded, with optional age, sex and note."""

    model_config = ConfigDict(extra="forbid")
    hpo: list[HpoFinding] = Field(min_length=1, max_length=300)
    age: float | None = Field(None, ge=0, le=130, description="years")
    sex: Sex = "unknown"
    note: str = Field("", max_length=4000, description="free-text clinical note (shown to the model only)")
    top_k: TopK = 5


class PhenopacketRequest(BaseModel):
    """One patient as a GA4GH Phenopacket v2 JSON document, as is."""

    model_config = ConfigDict(extra="forbid")
    phenopacket: dict[str, Any] = Field(description="a Phenopacket v2 document (phenotypicFeatures, subject)")
    top_k: TopK = 5


def _shape(body: Any) -> str:
    keys = body if isinstance(body, dict) else vars(body) if isinstance(body, BaseModel) else {}
    return "hpo" if "hpo" in keys else "phenopacket" if "phenopacket" in keys else "patient"


DiagnoseRequest = Annotated[
    Annotated[PatientCase, Tag("patient")]
    | Annotated[HpoCase, Tag("hpo")]
    | Annotated[PhenopacketRequest, Tag("phenopacket")],
    Discriminator(_shape),
]


class RecognisedFinding(BaseModel):
    term_id: str = Field(description="the live HPO id")
    label: str = Field(description="its HPO name")
    excluded: bool = Field(description="true: explicitly absent; false: present")
    input: str = Field(description="where it was read: hpo.0, phenopacket.phenotypicFeatures.2, symptoms.1, note")
    text: str = Field(description="what was read there: the id as sent, or the words matched")
    span: tuple[int, int] | None = Field(None, description="character offsets of text in that input string")
    note: str | None = Field(None, description="e.g. an obsolete id mapped to its replacement")


class TermEvidence(BaseModel):
    patient_term: str
    patient_label: str
    disease_term: str = Field(description="the disease's annotated HPO term it matches")
    disease_label: str
    match: Literal["exact", "ancestor", "descendant"] = Field(
        description="ancestor: the patient's finding is a kind of the annotated one; descendant: the reverse"
    )
    frequency: float | None = Field(description="annotated frequency in the disease; null when not given")
    patient_excluded: bool = Field(description="true: the patient lacks a finding the disease has (against)")


class Evidence(BaseModel):
    source_id: str = Field(description="the disease's id in its source (OMIM, ORPHA, ICD-10)")
    finding: str = Field(description="an annotated finding of the disease")
    patient_finding: str = Field(description="the patient's finding it matches")
    similarity: float = Field(description="cosine similarity of the two (all-MiniLM-L6-v2)")


class SimilarCase(BaseModel):
    source_id: str
    title: str
    score: float = Field(description="reciprocal-rank fusion score of BM25 and MiniLM")


class Diagnosis(BaseModel):
    rank: int
    name: str
    disease_id: str
    icd10: str | None
    confidence: float = Field(
        description="softmax of the phenotype ranker's scores over every ranked disease "
        "(phenotype.confidence_temperature); fused: softmax over the re-ranked top K of the fused score "
        "(temperature fitted on dev cases), the rest their phenotype confidence"
    )
    score: float | None = Field(None, description="the phenotype ranker's score, its pretest prior included")
    rationale: str
    red_flag: str | None = Field(None, description="the red-flag rule whose emergency this disease is, when it fired")
    series: str | None = Field(
        None, description="the numbered subtype series it shares with other entries of this differential"
    )
    evidence: list[Evidence] = Field(default_factory=list, description="text matches (retrieval ranking only)")
    term_evidence: list[TermEvidence] = Field(default_factory=list, description="the findings' term matches")


class DiagnoseResponse(BaseModel):
    request_id: str
    ranking: Literal["retrieval", "phenotype", "fused"] = Field(
        description="phenotype: every disease of the knowledge base (HPO-annotated rare diseases and common ones) "
        "ranked from the findings; fused: that ranking's top rerank.top_k re-ranked by the phenotype score fused "
        "with the model's log-likelihood, the rest after; retrieval: retrieved candidates ordered by the model "
        "(no longer served)"
    )
    findings: list[RecognisedFinding] = Field(description="the HPO findings read from the request")
    age: float | None
    sex: Sex
    differential: list[Diagnosis]
    low_confidence: bool = Field(False, description="the top score is below phenotype.low_confidence_below")
    notes: list[str] = Field(default_factory=list, description="lines for the clinician about this answer")
    rationale: str | None = Field(None, description="phenotype ranking: the model's text (it does not rank)")
    red_flags: list[dict]
    urgent_care: str | None
    next_steps: list[str]
    similar_cases: list[SimilarCase]
    model: str
    adapter: str | None
    completion_tokens: int = Field(description="tokens the model generated for this answer")
    disclaimer: str = DISCLAIMER


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=50)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False


class OllamaOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # sampling options we do not use are accepted
    num_predict: int | None = Field(None, ge=1)


class OllamaChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=50)
    stream: bool = True
    options: OllamaOptions = OllamaOptions()


class OllamaShowRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200)


class OllamaGenerateRequest(BaseModel):
    model: str | None = None
    prompt: str = Field(min_length=1, max_length=8000)
    system: str | None = Field(None, max_length=8000)
    stream: bool = True
    options: OllamaOptions = OllamaOptions()
