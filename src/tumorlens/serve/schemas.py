"""Response shapes, declared for the OpenAPI page at /docs."""

from __future__ import annotations

from typing import Literal

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
    status: str
    model: ModelRef
    auth_required: bool
    version: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
