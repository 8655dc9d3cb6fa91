"""Response shapes: each route's response_model, so what is declared at /docs is what is sent
(FastAPI validates every answer against it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DISCLAIMER = "Research tool, not a diagnosis: do not use it to make clinical decisions."


class Warning_(BaseModel):
    code: str = Field(description="low_confidence, unlike_training_data, colour_image, blank_image or note")
    message: str


class ModelRef(BaseModel):
    name: str
    version: str


class InputInfo(BaseModel):
    format: str = Field(description="JPEG, PNG, DICOM or NIfTI, from the file's content")
    filename: str | None = None
    sha256: str
    width: int
    height: int
    slices: int


class SlicePrediction(BaseModel):
    slice: int | None = None
    status: Literal["ok", "uncertain", "out_of_distribution", "refused"]
    predicted_class: str | None = Field(description="None when the input is unlike the training data")
    confidence: float | None
    probabilities: dict[str, float] | None
    warnings: list[Warning_]


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    input: InputInfo
    status: Literal["ok", "uncertain", "out_of_distribution", "refused"] | None = Field(
        description="for a single image; a volume has one status per slice")
    predicted_class: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    warnings: list[Warning_]
    slices: list[SlicePrediction] | None = Field(None, description="NIfTI volumes and multi-frame DICOM only")
    disclaimer: str = DISCLAIMER


class Attention(BaseModel):
    shares: dict[str, float] = Field(description="share of the heatmap's mass in tumor_candidates, brain (which "
                                                 "includes the candidates), skull and background")
    areas: dict[str, float] = Field(description="share of the image area of each region")
    focus: str = Field(description="the region holding the heatmap's peak (the audit's focus zone), or "
                                   "'none (empty heatmap)'")
    concentration: dict[str, float | None] = Field(
        description="attention share / area share for tumor_candidates and brain (1 = no preference); "
                    "null when undefined")


class ExplanationOut(BaseModel):
    method: str
    target_class: str
    slice: int | None = None
    overlay_png: str = Field(description="base64 PNG: heatmap over the image at the requested alpha")
    heatmap_png: str = Field(description="base64 RGBA PNG: the colour-mapped heatmap alone, opacity "
                                             "growing with the heat (for client-side blending)")
    image_png: str = Field(description="base64 PNG: the image as the model sees it")
    attention: Attention
    summary: str = Field(description="plain-language reading of the attention numbers")


class ExplainResponse(PredictResponse):
    explanation: ExplanationOut


class SampleOut(BaseModel):
    name: str
    source: str
    label: str | None
    media_type: str
    url: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    problems: list[str] = Field(default_factory=list, description="why the status is degraded")
    model: ModelRef
    auth_required: bool
    version: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ServiceInfo(BaseModel):
    explain_methods: list[str]
    default_method: str
    slow_methods: list[str] = Field(description="methods that run one at a time in their own thread, within "
                                                "a time budget, so that they never hold up predictions")
    max_upload_mb: float
    formats: str


class ModelCard(BaseModel):
    """The public card: no paths on the server, no hashes of training images."""

    name: str
    version: str
    classes: list[str]
    input: dict[str, Any] = Field(description="the preprocessing recipe")
    temperature: float
    metrics: dict[str, Any]
    provenance: dict[str, Any] = Field(description="how the model was trained (data kind, split, counts, "
                                                   "settings, library versions)")
    checkpoint: str = Field(description="the checkpoint's file name")
    card_markdown: str | None
    service: ServiceInfo
