"""The API's pydantic request and response models (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from medllm.safety import DISCLAIMER

Item = Annotated[str, Field(min_length=1, max_length=200)]


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
    sex: Literal["female", "male", "other", "unknown"] = "unknown"
    symptoms: list[Item] = Field(min_length=1, max_length=40, description="presenting symptoms and findings")
    history: list[Item] = Field(default_factory=list, max_length=40)
    medications: list[Item] = Field(default_factory=list, max_length=40)
    vitals: Vitals | None = None
    note: str = Field("", max_length=4000, description="free-text clinical note")

    def vignette(self) -> str:
        who = f"A {self.age:g}-year-old {self.sex} patient" if self.age is not None else f"A {self.sex} patient"
        text = f"{who} presents with {', '.join(self.symptoms)}."
        if self.history:
            text += f" History: {', '.join(self.history)}."
        if self.medications:
            text += f" Medications: {', '.join(self.medications)}."
        if self.note:
            text += f" Note: {self.note}"
        return text


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
        description="share of the retrieval score among the candidates; not a calibrated probability"
    )
    rationale: str
    evidence: list[Evidence]


class DiagnoseResponse(BaseModel):
    request_id: str
    differential: list[Diagnosis]
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
