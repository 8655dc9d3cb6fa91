"""The FastAPI application: `create_app(settings)` builds the service once and includes its routers.

Request path for /v1/predict and /v1/explain (one direction, as the rest of tumorlens): upload
streamed into memory with a size limit (event loop; upload.py) -> then in one worker thread
(service.py): type sniffed -> sizes checked from the header -> decoded within the memory budget
-> input checks -> model (the model thread, in a batch with concurrent requests; or, for slow
explainers, their own thread; predictor.py, batching.py) -> audit trail -> response body, which
FastAPI checks against the route's response_model. Nothing is written to disk but the audit row.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from tumorlens.version import __version__
from tumorlens.models.checkpoint import TumorModel
from tumorlens.serve import schemas
from tumorlens.serve.errors import install_error_handlers
from tumorlens.serve.middleware import ServiceMiddleware
from tumorlens.serve.routes import info, monitoring, predict
from tumorlens.serve.routes.info import STATIC
from tumorlens.serve.service import Service, resolve_model_path
from tumorlens.serve.settings import ServeSettings

__all__ = ["create_app", "resolve_model_path"]


def create_app(settings: ServeSettings | None = None, model: TumorModel | None = None, segmenter=None) -> FastAPI:
    """Build the service. Raises CheckpointError, AuthConfigError or AuditTrailError with a clear
    message when the model, the keys or the audit database are unusable. segmenter: a loaded tumor
    segmenter to use instead of settings.segmenter_path (e.g. one already in memory)."""
    service = Service.build(settings or ServeSettings(), model, segmenter)
    app = FastAPIOffline(
        title="tumorlens", version=__version__,
        description="Brain-tumor MRI classification with explanations. " + schemas.DISCLAIMER,
    )
    app.state.service = service
    # the parts by name, for operators' scripts and tests
    app.state.settings, app.state.predictor, app.state.audit, app.state.samples = (
        service.settings, service.predictor, service.audit, service.samples)
    app.add_middleware(ServiceMiddleware)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(info.router)
    app.include_router(predict.router)
    app.include_router(monitoring.router)
    app.router.on_shutdown.append(service.close)
    return app
