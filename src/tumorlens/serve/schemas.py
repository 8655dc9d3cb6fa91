"""Response shapes: each route's response_model, so what is declared at /docs is what is sent
(FastAPI validates every answer against it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DISCLAIMER = "Research tool, not a diagnosis: do not use it to make clinical decisions."


class Warning_(BaseModel):
    code: str = Field(description="low_confidence, unlike_training_data, unlike_brain_mri, colour_image, blank_image or note")
    message: str


class InputCheckOut(BaseModel):
    score: float | None = Field(description="the learned input check's score (tumorlens.inputcheck): how unlike "
                                            "the brain MRI training slices the image is; null when not scored")
    threshold: float | None = Field(description="above it the image is flagged unlike_brain_mri")


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
    input_check: InputCheckOut | None = None


class Box(BaseModel):
    x: int = Field(description="left column, in the uploaded image's pixels")
    y: int = Field(description="top row")
    width: int
    height: int


class TumorOutline(BaseModel):
    """What the bundled tumor segmenter (a U-Net; held-out Dice about 0.64, see SEGMENTER_CARD.md)
    outlines on this slice. Research use: it misses small tumors and can outline non-tumor tissue."""

    found: bool = Field(description="whether any tumor area is left after the segmenter's decision rule "
                                    "(threshold, small components dropped)")
    area_fraction: float = Field(description="tumor pixels / image pixels")
    bbox: Box | None = Field(description="bounding box of the tumor pixels; null when none was found")
    polygons: list[list[list[int]]] = Field(
        description="outer outline of each tumor region, largest first: [[x, y], ...] pixel columns and rows of "
                    "the uploaded image, simplified (OpenCV findContours + approxPolyDP)")
    segmenter: str | None = Field(description="the segmenter's version")
    note: str


class ExplainedTumorOutline(TumorOutline):
    heatmap_energy_inside: float | None = Field(
        description="share of the heatmap's energy inside the outlined tumor (the audit's energy_tumor); "
                    "null when no tumor was found or the heatmap is empty")


TUMOR_DESCRIPTION = ("the segmenter's tumor outline for a single image (for /v1/explain: the explained slice); "
                     "null for volumes on /v1/predict, refused inputs, and when the segmenter is off "
                     "(--no-segmenter) or unavailable (see /health)")


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
    input_check: InputCheckOut | None = Field(None, description="for a single image; a volume has one per slice")
    slices: list[SlicePrediction] | None = Field(None, description="NIfTI volumes and multi-frame DICOM only")
    tumor: TumorOutline | None = Field(None, description=TUMOR_DESCRIPTION)
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
    image_box: Box = Field(description="the part of the uploaded image that image_png shows (the model's head "
                                       "crop, or the whole image), stretched to its square: maps tumor.polygons "
                                       "onto image_png")
    attention: Attention
    summary: str = Field(description="plain-language reading of the attention numbers")


class ExplainResponse(PredictResponse):
    tumor: ExplainedTumorOutline | None = Field(None, description=TUMOR_DESCRIPTION)
    explanation: ExplanationOut


class SegmenterStatus(BaseModel):
    state: Literal["off", "loading", "ready", "unavailable"] = Field(
        description="off: started with --no-segmenter; unavailable: its file failed to load (see problems)")
    version: str | None = None


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
    segmenter: SegmenterStatus
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
