"""The FastAPI application: `create_app(settings)` loads the model once and wires the routes.

Request path for /v1/predict and /v1/explain (one direction, as the rest of tumorlens):
upload streamed into memory with a size limit (event loop) -> then in one worker thread: type
sniffed -> sizes checked from the header -> decoded -> input checks -> model (the model thread,
in a batch with concurrent requests; predictor.py, batching.py) -> audit trail -> JSON (or PNG).
Nothing is written to disk but the audit row.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from tumorlens import __version__
from tumorlens.explain.methods import DEFAULT_METHOD
from tumorlens.models.checkpoint import TumorModel, load_model
from tumorlens.serve import schemas
from tumorlens.serve.audit_trail import AuditTrail, AuditTrailError
from tumorlens.serve.auth import KeyChecker, load_api_keys
from tumorlens.serve.decode import DecodedInput, decode_upload
from tumorlens.serve.errors import ServiceError, install_error_handlers, request_id_of
from tumorlens.serve.model_card import find_card, model_description
from tumorlens.serve.predictor import (
    InputRefused,
    Predictor,
    SliceResult,
    heatmap_layer,
    png_bytes,
)
from tumorlens.serve.samples import SampleLibrary
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.upload import FILE_FIELD, SUPPORTED, Upload, read_upload

log = logging.getLogger("tumorlens.serve")
STATIC = Path(__file__).resolve().parent / "static"

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
ERRORS = {code: {"model": schemas.ErrorResponse} for code in (401, 413, 415, 422)}
# A page that may only load what this server serves: no CDN, no inline script.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class RequestIdMiddleware:
    """Gives every request an id (in request.state and the X-Request-ID header), as plain ASGI."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def resolve_model_path(settings: ServeSettings) -> Path:
    if settings.model_path is not None:
        return Path(settings.model_path)
    from tumorlens.assets import default_model_path

    return default_model_path()


def create_app(settings: ServeSettings | None = None, model: TumorModel | None = None) -> FastAPI:
    """Build the service. Raises CheckpointError, AuthConfigError or AuditTrailError with a clear
    message when the model, the keys or the audit database are unusable."""
    settings = settings or ServeSettings()
    model_path = resolve_model_path(settings)
    model = model or load_model(model_path)
    keys = settings.api_keys if settings.api_keys is not None else load_api_keys(keys_file=settings.api_keys_file)
    require_key = KeyChecker(keys, enabled=settings.auth)
    audit = AuditTrail(settings.db_url)
    predictor = Predictor(model, settings)
    predictor.warm_up()
    samples = SampleLibrary(settings.samples_dir)
    description = model_description(model, model_path, find_card(model_path, settings.model_card_path))
    description["service"] = {"explain_methods": list(settings.explain_methods), "default_method": DEFAULT_METHOD,
                              "max_upload_mb": settings.max_upload_mb, "formats": SUPPORTED}
    model_ref = {"name": model.arch, "version": model.version}

    app = FastAPIOffline(
        title="tumorlens", version=__version__,
        description="Brain-tumor MRI classification with explanations. " + schemas.DISCLAIMER,
    )
    app.state.settings, app.state.predictor, app.state.audit, app.state.samples = settings, predictor, audit, samples
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.router.on_shutdown.append(audit.close)
    app.router.on_shutdown.append(predictor.close)

    # -- shared request steps ------------------------------------------------------------------
    # Everything after the upload is read runs in one worker-thread call per request (decoding, the
    # model, the audit row, the response body): one hop off the event loop and back, which keeps the
    # loop free for the HTTP work and spares a thread wake-up per step on a busy CPU.
    def log_results(rid: str, endpoint: str, upload: Upload, decoded: DecodedInput,
                    results: list[SliceResult], key_id: str | None, method: str | None = None) -> None:
        rows = [{
            "request_id": rid, "endpoint": endpoint, "model_version": model.version,
            "image_sha256": upload.sha256, "input_format": decoded.format, "slice_index": r.index,
            "status": r.status, "predicted_class": r.predicted_class, "confidence": r.confidence,
            "probabilities": r.probabilities, "findings": sorted({w.code for w in r.warnings}) or None,
            "method": method, "api_key_id": key_id,
        } for r in results]
        try:
            audit.record(rows)
        except AuditTrailError as exc:
            log.error("%s (request %s)", exc, rid)
            # No unlogged predictions: without its audit row the answer is withheld.
            raise ServiceError(503, "audit_trail_unavailable", "the audit trail cannot be written; try again later") from None

    def response_body(rid: str, upload: Upload, decoded: DecodedInput, results: list[SliceResult]) -> dict:
        single = None if decoded.is_volume else results[0]
        return {
            "request_id": rid,
            "model": model_ref,
            "input": {"format": decoded.format, "filename": upload.filename, "sha256": upload.sha256,
                      "width": decoded.meta["width"], "height": decoded.meta["height"],
                      "slices": decoded.meta["slices"]},
            "status": single.status if single else None,
            "predicted_class": single.predicted_class if single else None,
            "confidence": single.confidence if single else None,
            "probabilities": single.probabilities if single else None,
            "warnings": [w.to_dict() for w in single.warnings] if single else [{"code": "note", "message": n} for n in decoded.notes],
            "slices": None if single else [r.to_dict() for r in results],
            "disclaimer": schemas.DISCLAIMER,
        }

    # -- routes --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})

    @app.get("/health", response_model=schemas.Health, tags=["service"])
    async def health():
        """Liveness and what a client needs to know before calling (is a key required?)."""
        return {"status": "ok", "model": model_ref, "auth_required": settings.auth, "version": __version__}

    @app.post("/v1/predict", response_model=schemas.PredictResponse, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              tags=["predict"])
    async def predict(request: Request, key_id: str | None = Depends(require_key)):
        """Class probabilities for one slice (JPEG, PNG, DICOM); NIfTI volumes and multi-frame DICOM
        get one prediction per slice. Warnings flag low confidence and inputs unlike the training data."""
        upload = await read_upload(request, settings.max_upload_bytes)
        rid = request_id_of(request)

        def work():
            decoded = decode_upload(upload.data, settings)
            results = predictor.predict(decoded)
            log_results(rid, "predict", upload, decoded, results, key_id)
            return decoded, results

        decoded, results = await run_in_threadpool(work)
        if not decoded.is_volume and results[0].status == "refused":
            raise InputRefused(results[0])
        if decoded.is_volume and all(r.status == "refused" for r in results):
            raise ServiceError(422, "blank_image", "refused: every slice of the volume is blank or unusable")
        return JSONResponse(response_body(rid, upload, decoded, results))

    @app.post("/v1/explain", response_model=schemas.ExplainResponse, responses={
        **ERRORS, 200: {"content": {"image/png": {}}, "description": "JSON, or the overlay PNG with ?format=png "
                                                                        "or Accept: image/png"}},
        openapi_extra=UPLOAD_BODY, tags=["predict"])
    async def explain_route(
        request: Request,
        method: str = Query(DEFAULT_METHOD, description="explainer (see /v1/model service.explain_methods)"),
        target: str | None = Query(None, description="class to explain; default: the top class"),
        slice: int | None = Query(None, ge=0, description="slice of a volume; default: the middle one"),
        alpha: float = Query(0.5, ge=0.0, le=1.0, description="heatmap opacity in overlay_png"),
        format: str | None = Query(None, pattern="^(json|png)$", description="png: return the overlay image itself"),
        key_id: str | None = Depends(require_key),
    ):
        """The prediction plus a heatmap overlay, the share of attention on tumor-candidate areas,
        brain, skull and background, and a plain-language reading of those numbers."""
        if method not in settings.explain_methods:
            raise ServiceError(422, "invalid_method",
                               f"unknown or disabled method {method!r}; choose one of: {', '.join(settings.explain_methods)}")
        upload = await read_upload(request, settings.max_upload_bytes)
        rid = request_id_of(request)
        wants_png = format == "png" or (format is None and _prefers_png(request.headers.get("accept", "")))

        def work() -> Response:
            from tumorlens.explain import overlay

            decoded = decode_upload(upload.data, settings)
            try:
                ex = predictor.explain(decoded, slice, method, target)
            except InputRefused as refused:
                log_results(rid, "explain", upload, decoded, [refused.result], key_id, method)
                raise
            log_results(rid, "explain", upload, decoded, [ex.result], key_id, method)
            overlay_rgb = overlay(ex.image01, ex.heatmap, alpha=alpha)
            if wants_png:
                r = ex.result
                return Response(png_bytes(overlay_rgb), media_type="image/png", headers={
                    "X-Status": r.status, "X-Predicted-Class": r.predicted_class or "",
                    "X-Confidence": "" if r.confidence is None else f"{r.confidence:.4f}", "X-Method": method})
            body = response_body(rid, upload, decoded, [ex.result])
            if decoded.is_volume:  # explain answers for one slice: report it like a single image
                r = ex.result
                body.update(status=r.status, predicted_class=r.predicted_class, confidence=r.confidence,
                            probabilities=r.probabilities, warnings=[w.to_dict() for w in r.warnings])
            body["explanation"] = {
                "method": method, "target_class": ex.target_class, "slice": ex.result.index,
                "overlay_png": _b64(png_bytes(overlay_rgb)),
                "heatmap_png": _b64(png_bytes(heatmap_layer(ex.heatmap))),
                "image_png": _b64(png_bytes((ex.image01 * 255).round().astype("uint8"))),
                "attention": ex.attention.to_dict(), "summary": ex.summary,
            }
            return JSONResponse(body)  # serialised here, off the event loop

        return await run_in_threadpool(work)

    @app.get("/v1/samples", response_model=list[schemas.SampleOut], tags=["samples"])
    async def list_samples(key_id: str | None = Depends(require_key)):
        """The sample slices bundled with the package (Kaggle Testing and figshare)."""
        return samples.list()

    @app.get("/v1/samples/{name}", responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 404: {}},
             tags=["samples"])
    async def get_sample(name: str, key_id: str | None = Depends(require_key)):
        entry = samples.get(name)
        if entry is None:
            raise ServiceError(404, "unknown_sample", f"no sample named {name!r}; GET /v1/samples lists them")
        return FileResponse(entry.path, media_type=entry.media_type)

    @app.get("/v1/model", tags=["service"])
    async def model_card(key_id: str | None = Depends(require_key)):
        """The model card: architecture, version, classes, preprocessing, metrics, provenance."""
        return description

    return app


def _prefers_png(accept: str) -> bool:
    """True when the client asks for image/png and does not also accept JSON first."""
    accept = accept.lower()
    if "image/png" not in accept:
        return False
    return "application/json" not in accept or accept.index("image/png") < accept.index("application/json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
