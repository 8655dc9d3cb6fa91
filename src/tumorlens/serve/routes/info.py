"""GET (and HEAD) /health and /, GET /v1/model, /v1/samples and /v1/samples/{name}."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from tumorlens.version import __version__
from tumorlens.serve import schemas
from tumorlens.serve.deps import api_key, service
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.service import Service

STATIC = Path(__file__).resolve().parents[1] / "static"
# A page that may only load what this server serves: no CDN, no inline script.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

router = APIRouter()
KEYED = {401: {"model": schemas.ErrorResponse}}


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})


@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=schemas.Health, tags=["service"])
async def health(svc: Service = Depends(service)):
    """Liveness and what a client needs to know before calling (is a key required?). `status` is
    "degraded" when a model thread had to be restarted, the audit database was found deleted, or the
    tumor segmenter failed to load (predictions then come without outlines)."""
    problems = svc.predictor.problems() + svc.segmenter.problems()
    if svc.audit.reopened:
        problems.append(f"the audit database was re-created {svc.audit.reopened} time(s) after it was deleted")
    return {"status": "degraded" if problems else "ok", "problems": problems, "model": svc.model_ref,
            "segmenter": {"state": svc.segmenter.state, "version": svc.segmenter.version},
            "auth_required": svc.settings.auth, "version": __version__}


@router.get("/v1/model", response_model=schemas.ModelCard, responses=KEYED, tags=["service"])
async def model_card(key_id: str | None = Depends(api_key), svc: Service = Depends(service)):
    """The public model card: architecture, version, classes, preprocessing, metrics, how it was
    trained (no paths, no training-image hashes: those stay in the checkpoint, for the audit)."""
    return svc.card


@router.get("/v1/samples", response_model=list[schemas.SampleOut], responses=KEYED, tags=["samples"])
async def list_samples(key_id: str | None = Depends(api_key), svc: Service = Depends(service)):
    """The sample slices bundled with the package (Kaggle Testing and figshare)."""
    return svc.samples.list()


@router.get("/v1/samples/{name}", tags=["samples"], response_class=FileResponse, responses={
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the image file"},
    404: {"model": schemas.ErrorResponse}, **KEYED})
async def get_sample(name: str, key_id: str | None = Depends(api_key), svc: Service = Depends(service)):
    entry = svc.samples.get(name)
    if entry is None:
        raise ServiceError(404, "unknown_sample", f"no sample named {name!r}; GET /v1/samples lists them")
    return FileResponse(entry.path, media_type=entry.media_type)
