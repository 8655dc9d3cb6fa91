"""POST /v1/predict and POST /v1/explain: an upload in, a prediction (and an explanation) out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tumorlens.explain.methods import DEFAULT_METHOD
from tumorlens.serve import schemas
from tumorlens.serve.deps import api_key, request_id, service, upload
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.service import Service
from tumorlens.serve.upload import FILE_FIELD, SUPPORTED, Upload

router = APIRouter(tags=["predict"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FILE_FIELD],
            "properties": {FILE_FIELD: {"type": "string", "format": "binary",
                                        "description": f"one slice or volume: {SUPPORTED}"}},
        }}},
    }
}
ERRORS = {code: {"model": schemas.ErrorResponse} for code in (400, 401, 413, 415, 422, 503)}


@router.post("/v1/predict", response_model=schemas.PredictResponse, responses=ERRORS, openapi_extra=UPLOAD_BODY)
async def predict(file: Upload = Depends(upload), key_id: str | None = Depends(api_key),
                  rid: str = Depends(request_id), svc: Service = Depends(service)):
    """Class probabilities for one slice (JPEG, PNG, DICOM); NIfTI volumes and multi-frame DICOM
    get one prediction per slice. Warnings flag low confidence and inputs unlike the training data."""
    return await run_in_threadpool(svc.predict, rid, file, key_id)


def explain_method(method: str | None = Query(None, description=f"explainer (see /v1/model service.explain_methods); "
                                                       f"default: service.default_method ({DEFAULT_METHOD} for a tumorlens model)"),
                   key_id: str | None = Depends(api_key), svc: Service = Depends(service)) -> str:
    """The method, checked before the upload is read."""
    method = method or svc.settings.default_method
    if method not in svc.settings.explain_methods:
        raise ServiceError(422, "invalid_method",
                           f"unknown or disabled method {method!r}; choose one of: {', '.join(svc.settings.explain_methods)}")
    return method


@router.post("/v1/explain", response_model=schemas.ExplainResponse, openapi_extra=UPLOAD_BODY, responses={
    **ERRORS, 200: {"content": {"image/png": {}}, "description": "JSON, or the overlay PNG with ?format=png "
                                                                    "or Accept: image/png"}})
async def explain(
    request: Request,
    method: str = Depends(explain_method),
    target: str | None = Query(None, description="class to explain; default: the top class"),
    slice: int | None = Query(None, ge=0, description="slice of a volume; default: the middle one"),
    alpha: float = Query(0.5, ge=0.0, le=1.0, description="heatmap opacity in overlay_png"),
    format: str | None = Query(None, pattern="^(json|png)$", description="png: return the overlay image itself"),
    file: Upload = Depends(upload),
    key_id: str | None = Depends(api_key),
    rid: str = Depends(request_id),
    svc: Service = Depends(service),
) -> Response | dict:
    """The prediction plus a heatmap overlay, the share of attention on tumor-candidate areas,
    brain, skull and background, and a plain-language reading of those numbers. Slow methods
    (service.slow_methods in /v1/model) run one at a time beside the predictions, within a time budget."""
    wants_png = format == "png" or (format is None and prefers_png(request.headers.get("accept", "")))
    return await run_in_threadpool(svc.explain, rid, file, key_id, method, target, slice, alpha, wants_png)


def prefers_png(accept: str) -> bool:
    """True when the client asks for image/png and does not also accept JSON first."""
    accept = accept.lower()
    if "image/png" not in accept:
        return False
    return "application/json" not in accept or accept.index("image/png") < accept.index("application/json")
