"""GET /v1/monitoring: drift of inputs and predictions, and estimated accuracy, over recent windows."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from tumorlens.serve import schemas
from tumorlens.serve.deps import api_key, service
from tumorlens.serve.service import Service

router = APIRouter(tags=["monitoring"])


@router.get("/v1/monitoring", responses={401: {"model": schemas.ErrorResponse}})
async def monitoring(window: int = Query(200, ge=20, le=10_000, description="requests per window"),
                     windows: int = Query(20, ge=1, le=200, description="how many of the latest windows"),
                     key_id: str | None = Depends(api_key), svc: Service = Depends(service)) -> dict:
    """The served model's latest predictions in windows of `window` requests, each against the
    reference profile of its validation data: per-feature drift (Kolmogorov-Smirnov), the predicted
    classes (chi-square), the share flagged by the input check (binomial), Bonferroni-corrected
    together, and the accuracy expected from the calibrated confidences (no labels needed). `alerts`
    lists what the latest window crossed; an empty audit trail gives no windows and no alerts."""
    return await run_in_threadpool(svc.monitoring, window, windows)
