"""The service's parts (model threads, audit trail, samples, keys, card) in one object, and the work
of a request after its upload is read: decode -> input checks -> model -> audit row -> response body.

Routes (routes/) reach it through the `service` dependency (deps.py); everything here runs in one
worker-thread call per request (decoding, the model, the audit row, the body): one hop off the
event loop and back, which keeps the loop free for the HTTP work and spares a thread wake-up per
step on a busy CPU.
"""

from __future__ import annotations

import base64
import logging
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from fastapi.responses import Response

from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.loading import load_model
from tumorlens.monitoring.drift import Thresholds
from tumorlens.monitoring.features import output_features
from tumorlens.monitoring.reference import ReferenceProfile, stored_reference
from tumorlens.monitoring.windows import monitoring_report
from tumorlens.serve import schemas
from tumorlens.serve.audit_trail import AuditTrail, AuditTrailError
from tumorlens.serve.auth import KeyChecker, load_api_keys
from tumorlens.serve.decode import DecodedInput, decode_upload
from tumorlens.serve.decode_budget import DecodeBudget, estimate_decode_bytes
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.model_card import find_card, model_description
from tumorlens.serve.predictor import InputRefused, Predictor, SliceResult, explained_slice, heatmap_layer, png_bytes
from tumorlens.serve.samples import SampleLibrary
from tumorlens.serve.segmenter import SegmenterLane, segmenter_loader
from tumorlens.serve.settings import ServeSettings, fit_to_model
from tumorlens.serve.tumor import energy_inside, image_box, outline
from tumorlens.serve.upload import SUPPORTED, Upload

log = logging.getLogger("tumorlens.serve")


def resolve_model_path(settings: ServeSettings) -> Path:
    if settings.model_path is not None:
        return Path(settings.model_path)
    from tumorlens.assets import default_model_path

    return default_model_path()


@dataclass
class Service:
    settings: ServeSettings
    model: TumorModel
    predictor: Predictor
    audit: AuditTrail
    samples: SampleLibrary
    keys: KeyChecker
    card: dict  # the public model card (model_card.py), with the service's own facts
    decode_budget: DecodeBudget
    segmenter: SegmenterLane
    reference: ReferenceProfile | None = None  # monitoring's reference profile (monitoring/reference.py)

    @classmethod
    def build(cls, settings: ServeSettings, model: TumorModel | None = None, segmenter=None) -> Service:
        """Raises CheckpointError, AuthConfigError or AuditTrailError with a clear message when the
        model, the keys or the audit database are unusable (FileNotFoundError for a named segmenter
        file that is not there). segmenter: a ready one (anything with predict, recipe and version)
        instead of loading settings.segmenter_path."""
        if settings.segmenter and segmenter is None and settings.segmenter_path is not None \
                and not Path(settings.segmenter_path).is_file():
            # a named file that is not there is a typo: say so at once; one that fails to load
            # (damaged, another format) leaves the service up without outlines and /health degraded
            raise FileNotFoundError(f"segmenter not found: {settings.segmenter_path}")
        model_path = resolve_model_path(settings)
        model = model or load_model(model_path, **(settings.model_options or {}))
        settings = fit_to_model(settings, model)
        keys = settings.api_keys if settings.api_keys is not None else load_api_keys(keys_file=settings.api_keys_file)
        checker = KeyChecker(keys, enabled=settings.auth)
        audit = AuditTrail(settings.db_url)
        predictor = Predictor(model, settings)
        predictor.warm_up()
        reference = stored_reference(model_path) if model_path.is_file() else None
        if settings.reference_data is not None:  # asked for: computed now, over a stored one
            from tumorlens.serve.reference import reference_for

            reference = reference_for(model, settings.reference_data, predictor)
        card = model_description(model, model_path, find_card(model_path, settings.model_card_path))
        card["service"] = {"explain_methods": list(settings.explain_methods), "default_method": settings.default_method,
                           "slow_methods": [m for m in settings.explain_methods if predictor.is_slow(m)],
                           "max_upload_mb": settings.max_upload_mb, "formats": SUPPORTED}
        budget = DecodeBudget(settings.decode_memory_bytes, settings.decode_wait_s)
        loader = (lambda: segmenter) if segmenter is not None and settings.segmenter else \
            segmenter_loader(settings.segmenter, settings.segmenter_path)
        lane = SegmenterLane(loader, settings.max_batch, settings.batch_wait_ms)
        return cls(settings, model, predictor, audit, SampleLibrary(settings.samples_dir), checker, card, budget, lane,
                   reference)

    def close(self) -> None:
        self.segmenter.close()
        self.predictor.close()
        self.audit.close()

    @property
    def model_ref(self) -> dict:
        return {"name": self.model.arch, "version": self.model.version}

    # -- steps shared by predict and explain ----------------------------------------------------
    def log_results(self, rid: str, endpoint: str, upload: Upload, decoded: DecodedInput,
                    results: list[SliceResult], key_id: str | None, method: str | None = None) -> None:
        rows = [{
            "request_id": rid, "endpoint": endpoint, "model_version": self.model.version,
            "image_sha256": upload.sha256, "input_format": decoded.format, "slice_index": r.index,
            "status": r.status, "predicted_class": r.predicted_class, "confidence": r.confidence,
            "probabilities": r.probabilities, "findings": sorted({w.code for w in r.warnings}) or None,
            "method": method, "api_key_id": key_id,
            "features": None if r.features is None else {**r.features, **output_features(r.probabilities)},
        } for r in results]
        try:
            self.audit.record(rows)
        except AuditTrailError as exc:
            log.error("%s (request %s)", exc, rid)
            # No unlogged predictions: without its audit row the answer is withheld.
            raise ServiceError(503, "audit_trail_unavailable", "the audit trail cannot be written; try again later",
                               headers={"Retry-After": "10"}) from None

    def response_body(self, rid: str, upload: Upload, decoded: DecodedInput, results: list[SliceResult]) -> dict:
        """The PredictResponse shape (schemas.py), as the route's response_model checks it."""
        single = None if decoded.is_volume else results[0]
        return {
            "request_id": rid,
            "model": self.model_ref,
            "input": {"format": decoded.format, "filename": upload.filename, "sha256": upload.sha256,
                      "width": decoded.meta["width"], "height": decoded.meta["height"],
                      "slices": decoded.meta["slices"]},
            "status": single.status if single else None,
            "predicted_class": single.predicted_class if single else None,
            "confidence": single.confidence if single else None,
            "probabilities": single.probabilities if single else None,
            "warnings": [w.to_dict() for w in single.warnings] if single else [{"code": "note", "message": n} for n in decoded.notes],
            "input_check": single.input_check() if single else None,
            "slices": None if single else [r.to_dict() for r in results],
            "disclaimer": schemas.DISCLAIMER,
        }

    def tumor_mask(self, pending: Future | None, rid: str):
        """The segmenter's mask, or None (off, failed, or too slow: the prediction is sent without it)."""
        if pending is None:
            return None
        try:
            return pending.result(timeout=self.settings.model_timeout_s)
        except FutureTimeout:
            pending.cancel()
            log.error("the segmenter did not answer within %g s (request %s); sent without outline",
                      self.settings.model_timeout_s, rid)
        except Exception as exc:  # noqa: BLE001 - the outline is an extra: never fail the prediction for it
            log.error("no tumor outline for request %s: %s", rid, exc)
        return None

    def monitoring(self, window: int, max_windows: int) -> dict:
        """The monitoring report of the served model's latest audit-trail rows (monitoring/windows.py)."""
        thresholds = Thresholds(window=window)
        rows, others = self.audit.monitored(self.model.version, window * max_windows)
        return monitoring_report(rows, self.reference, self.model.version, self.model.classes, thresholds,
                                 max_windows, others)

    def decode(self, upload: Upload) -> DecodedInput:
        return decode_upload(upload.data, self.settings)

    # -- the two kinds of request (called in a worker thread) -----------------------------------
    # The decode budget is held until the answer is built: the decoded slices live that long.
    def predict(self, rid: str, upload: Upload, key_id: str | None) -> dict:
        with self.decode_budget.hold(estimate_decode_bytes(upload.data, self.settings.max_pixels)):
            return self._predict(rid, upload, key_id)

    def explain(self, rid: str, upload: Upload, key_id: str | None, method: str, target: str | None,
                slice_index: int | None, alpha: float, wants_png: bool) -> dict | Response:
        with self.decode_budget.hold(estimate_decode_bytes(upload.data, self.settings.max_pixels)):
            return self._explain(rid, upload, key_id, method, target, slice_index, alpha, wants_png)

    def _predict(self, rid: str, upload: Upload, key_id: str | None) -> dict:
        decoded = self.decode(upload)
        # started first, so that it runs beside the classifier; volumes get no outline here (one
        # segmenter pass per slice would multiply the cost; /v1/explain outlines the explained slice)
        pending = None if decoded.is_volume else self.segmenter.submit(decoded.images[0])
        try:
            results = self.predictor.predict(decoded)
            self.log_results(rid, "predict", upload, decoded, results, key_id)
            if not decoded.is_volume and results[0].status == "refused":
                raise InputRefused(results[0])
            if decoded.is_volume and all(r.status == "refused" for r in results):
                raise ServiceError(422, "blank_image", "refused: every slice of the volume is blank or unusable")
        except BaseException:
            _drop(pending)  # no answer will carry the outline: let the segmenter skip it
            raise
        body = self.response_body(rid, upload, decoded, results)
        mask = self.tumor_mask(pending, rid)
        if mask is not None:
            body["tumor"] = outline(mask, self.segmenter.version)
        return body

    def _explain(self, rid: str, upload: Upload, key_id: str | None, method: str, target: str | None,
                 slice_index: int | None, alpha: float, wants_png: bool) -> dict | Response:
        from tumorlens.explain import overlay

        decoded = self.decode(upload)
        index = explained_slice(decoded, slice_index)
        # the PNG answer has no place for an outline: no segmenter pass for it
        pending = None if wants_png else self.segmenter.submit(decoded.images[index])
        try:
            try:
                ex = self.predictor.explain(decoded, slice_index, method, target)
            except InputRefused as refused:
                self.log_results(rid, "explain", upload, decoded, [refused.result], key_id, method)
                raise
            self.log_results(rid, "explain", upload, decoded, [ex.result], key_id, method)
        except BaseException:
            _drop(pending)
            raise
        overlay_rgb = overlay(ex.image01, ex.heatmap, alpha=alpha)
        r = ex.result
        if wants_png:
            return Response(png_bytes(overlay_rgb), media_type="image/png", headers={
                "X-Status": r.status, "X-Predicted-Class": r.predicted_class or "",
                "X-Confidence": "" if r.confidence is None else f"{r.confidence:.4f}", "X-Method": method})
        body = self.response_body(rid, upload, decoded, [r])
        if decoded.is_volume:  # explain answers for one slice: report it like a single image
            body.update(status=r.status, predicted_class=r.predicted_class, confidence=r.confidence,
                        probabilities=r.probabilities, warnings=[w.to_dict() for w in r.warnings],
                        input_check=r.input_check())
        body["explanation"] = {
            "method": method, "target_class": ex.target_class, "slice": r.index,
            "overlay_png": _b64(png_bytes(overlay_rgb)),
            "heatmap_png": _b64(png_bytes(heatmap_layer(ex.heatmap))),
            "image_png": _b64(png_bytes((ex.image01 * 255).round().astype("uint8"))),
            "attention": ex.attention.to_dict(), "summary": ex.summary,
            "image_box": image_box(decoded.images[index], self.model.recipe),
        }
        mask = self.tumor_mask(pending, rid)
        if mask is not None:
            image = decoded.images[index]
            body["tumor"] = {**outline(mask, self.segmenter.version), "heatmap_energy_inside":
                             energy_inside(ex.heatmap, ex.regions, mask, image, self.model.recipe)}
        return body


def _drop(pending: Future | None) -> None:
    if pending is not None:
        pending.cancel()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
