"""The model behind the service: loaded once, run by model threads that batch concurrent requests.

Request threads do the per-image work (input checks, preprocessing, the attention measures) and
hand the model pass to a `ModelRunner` (batching.py): requests arriving together share one forward
pass, or one batched Grad-CAM. Each model thread owns its own network replica, because CAM
explainers attach hooks to the network they explain. Routes call these methods from worker
threads, so the event loop keeps answering (health checks, uploads in flight) while the model works.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from tumorlens.anatomy.regions import Regions
from tumorlens.inputcheck.check import learned_scores, score_checks
from tumorlens.inputcheck.result import Finding, InputCheck
from tumorlens.inputcheck.rules import check_rules
from tumorlens.models.checkpoint import TumorModel
from tumorlens.monitoring.features import input_features
from tumorlens.serve.attention import (
    AttentionSummary,
    attention_summary,
    image_regions,
    plain_explanation,
)
from tumorlens.serve.batching import Job, ModelRunner, Replica, run_batch
from tumorlens.serve.decode import DecodedInput
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.frozen import eager_logits, frozen_logits
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.slow_lane import SlowLane, is_slow


@dataclass
class SliceResult:
    index: int | None  # slice/frame index for volumes, None for a single image
    status: str  # ok | uncertain | out_of_distribution | refused
    predicted_class: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    warnings: list[Finding] = field(default_factory=list)
    check: InputCheck | None = None
    features: dict | None = None  # for monitoring (monitoring/features.py); None when it is off

    def input_check(self) -> dict | None:
        """The learned input check's score and threshold (schemas.InputCheckOut); None when unchecked."""
        return None if self.check is None else {"score": self.check.score, "threshold": self.check.threshold}

    def to_dict(self) -> dict:
        d = {"status": self.status, "predicted_class": self.predicted_class, "confidence": self.confidence,
             "probabilities": self.probabilities, "warnings": [w.to_dict() for w in self.warnings],
             "input_check": self.input_check()}
        if self.index is not None:
            d = {"slice": self.index, **d}
        return d


@dataclass
class ExplainResult:
    result: SliceResult
    method: str
    target_class: str
    heatmap: np.ndarray  # (S, S) in [0, 1]
    image01: np.ndarray  # (S, S) display image
    attention: AttentionSummary
    summary: str
    regions: Regions  # of image01, for measures against other masks (the segmenter's tumor)


def explained_slice(decoded: DecodedInput, slice_index: int | None) -> int:
    """The slice an explanation is about: the requested one of a volume (default: the middle), or 0."""
    if not decoded.is_volume:
        return 0
    n = len(decoded.images)
    index = n // 2 if slice_index is None else slice_index
    if not 0 <= index < n:
        raise ServiceError(422, "invalid_slice", f"slice {slice_index} does not exist; the volume has {n} slices (0-{n - 1})")
    return index


class InputRefused(ServiceError):
    """No prediction for this image (a colour photograph, a blank image); carries the verdict."""

    def __init__(self, result: SliceResult):
        codes = {w.code for w in result.warnings}
        code = "blank_image" if "blank_image" in codes else "out_of_distribution"
        reasons = "; ".join(w.message for w in result.warnings if w.code != "note")
        super().__init__(422, code, f"refused: {reasons}")
        self.result = result


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 gray (H, W) or RGB (H, W, 3) -> PNG bytes (OpenCV: fast, and already a dependency)."""
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def heatmap_layer(heatmap: np.ndarray) -> np.ndarray:
    """RGBA uint8: the jet colour of each heat value, opacity sqrt(heat) as in explain.overlay, so a
    browser can lay it over the image at any opacity (the page's slider) and cold areas stay clear."""
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    alpha = (np.sqrt(heat) * 255).round().astype(np.uint8)
    return np.dstack([rgb, alpha])


class Predictor:
    def __init__(self, model: TumorModel, settings: ServeSettings):
        self.model = model  # classes, recipe and version; its network is replica 0
        self.settings = settings
        if settings.inference_threads:
            torch.set_num_threads(settings.inference_threads)
        self.replicas = [model] + [copy.deepcopy(model) for _ in range(settings.workers - 1)]
        self._replicas = [Replica(r, frozen_logits(r) if settings.frozen_inference else eager_logits(r.net))
                          for r in self.replicas]
        self.runner: ModelRunner | None = None
        self._runner_lock = threading.Lock()
        self._slow = {m for m in settings.explain_methods if is_slow(m, model.recipe.size)}
        self.slow_lane: SlowLane | None = None
        if self._slow:
            self.slow_lane = SlowLane(model, settings.slow_budget_s, settings.slow_concurrency)

    def is_slow(self, method: str) -> bool:
        """Runs in the slow lane (slow_lane.py) rather than in the shared batches."""
        return method in self._slow

    def problems(self) -> list[str]:
        """What /health reports as degraded: restarted or dead model threads."""
        out = []
        if self.runner is not None and self.runner.restarts:
            out.append(f"a model thread died and was restarted {self.runner.restarts} time(s)")
        if self.slow_lane is not None and not self.slow_lane.alive():
            out.append("the slow-explainer thread is not running (it restarts on the next slow request)")
        return out

    def warm_up(self) -> None:
        """Forward passes and Grad-CAMs per replica at start-up, at the batch sizes the load brings,
        then the model threads start: the first users must not pay for lazy initialisation
        (importing the explainer libraries alone takes seconds, and each new batch shape costs)."""
        size = self.model.recipe.size
        yy, xx = np.mgrid[:size, :size]
        head = (((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.33 * size)) ** 2 < 1).astype(np.float32)
        x = self.model.prepare([head])
        default = self.settings.default_method
        for replica in self._replicas:
            for n in sorted({1, 2, min(4, self.settings.max_batch)}):
                # the default explainer too, unless it is a slow one (a black box's occlusion)
                for method in (None,) + (() if self.is_slow(default) else (default,)):
                    jobs = [Job(x, method, None) for _ in range(n)]
                    run_batch(replica, jobs)
                    for job in jobs:
                        job.future.result()  # a failure here is a broken model: raise it at start-up
        if self.settings.learned_input_check:
            from tumorlens.inputcheck.features import shared_extractor

            shared_extractor().freeze()
            learned_scores([head])  # loads the input check's network and reference now, not on the first upload
        self.start()

    def start(self) -> ModelRunner:
        """The model threads (started on first use, and again after close)."""
        with self._runner_lock:
            if self.runner is None:
                self.runner = ModelRunner(self._replicas, self.settings.max_batch, self.settings.batch_wait_ms)
            return self.runner

    def close(self) -> None:
        with self._runner_lock:
            if self.runner is not None:
                self.runner.close()
                self.runner = None
        if self.slow_lane is not None:
            self.slow_lane.close()

    def _submit(self, x: torch.Tensor, method: str | None = None, target: int | None = None) -> Future:
        """Queue x for the model; the future's result is a batching.ModelOutput."""
        return self.start().submit(x, method, target)

    def _wait(self, future: Future):
        """The model's answer, or 503 after settings.model_timeout_s (the job is then dropped)."""
        try:
            return future.result(timeout=self.settings.model_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ServiceError(503, "model_busy", f"the model did not answer within {self.settings.model_timeout_s:g} s; "
                               "try again later", headers={"Retry-After": "5"}) from None

    # -- prediction ----------------------------------------------------------------------------
    def _score(self, checks: list[InputCheck], images) -> None:
        """The learned input check (tumorlens.inputcheck) on the rules' verdicts, unless switched off."""
        if self.settings.learned_input_check:
            score_checks(checks, images)

    def _judge(self, index: int | None, probs: np.ndarray | None, check: InputCheck, notes: list[str]) -> SliceResult:
        warnings = list(check.findings) + [Finding("note", n) for n in notes]
        if check.refuse or probs is None:
            return SliceResult(index, "refused", None, None, None, warnings, check)
        classes = self.model.classes
        top = int(np.argmax(probs))
        confidence = round(float(probs[top]), 4)
        probabilities = {c: round(float(p), 4) for c, p in zip(classes, probs)}
        if check.unlike_training:
            return SliceResult(index, "out_of_distribution", None, confidence, probabilities, warnings, check)
        status = "ok"
        if confidence < self.settings.low_confidence:
            status = "uncertain"
            p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1)
            entropy = float(-(p * np.log(p)).sum() / np.log(len(p)))  # 1 = all classes equally likely
            warnings.append(Finding(
                "low_confidence",
                f"low confidence: the top class has {confidence:.0%} probability (below "
                f"{self.settings.low_confidence:.0%}; normalised entropy {entropy:.2f}); the image may be "
                "unusual or ambiguous"))
        return SliceResult(index, status, classes[top], confidence, probabilities, warnings, check)

    def predict(self, decoded: DecodedInput) -> list[SliceResult]:
        checks = [check_rules(img, decoded.colour_fraction, decoded.meta) for img in decoded.images]
        usable = [i for i, c in enumerate(checks) if not c.refuse]
        probs: dict[int, np.ndarray] = {}
        pending = self._submit(self.model.prepare([decoded.images[i] for i in usable])) if usable else None
        self._score(checks, decoded.images)  # on this thread while the model works
        features = [self.input_features(img, c) for img, c in zip(decoded.images, checks)]  # while the model works
        if pending is not None:
            probs = dict(zip(usable, self._wait(pending).probabilities))
        volume = decoded.is_volume
        results = [self._judge(i if volume else None, probs.get(i), c, decoded.notes) for i, c in enumerate(checks)]
        for result, f in zip(results, features):
            result.features = f
        return results

    def input_features(self, image: np.ndarray, check: InputCheck) -> dict | None:
        return input_features(image, check) if self.settings.monitoring else None

    # -- explanation ---------------------------------------------------------------------------
    def explain(self, decoded: DecodedInput, slice_index: int | None, method: str, target: str | None) -> ExplainResult:
        index = explained_slice(decoded, slice_index)
        image = decoded.images[index]
        check = check_rules(image, decoded.colour_fraction, decoded.meta)
        if check.refuse:
            raise InputRefused(self._judge(index if decoded.is_volume else None, None, check, decoded.notes))
        classes = self.model.classes
        if target is not None and target not in classes:
            raise ServiceError(422, "invalid_target", f"unknown target class {target!r}; choose one of: {', '.join(classes)}")
        recipe = self.model.recipe
        image01 = recipe.display(image)
        x = torch.from_numpy(recipe.normalize(image01)[None, None].copy())  # = model.prepare([image]), display reused
        target_index = classes.index(target) if target is not None else None
        if self.is_slow(method):
            regions = image_regions(image01)
            self._score([check], [image])
            features = self.input_features(image, check)
            out = self.slow_lane.run(x, method, target_index)
        else:
            pending = self._submit(x, method, target_index)
            regions = image_regions(image01)  # on this thread while the model works on the heatmap
            self._score([check], [image])
            features = self.input_features(image, check)
            out = self._wait(pending)
        probs, heatmap, t = out.probabilities[0], out.heatmaps[0], int(out.targets[0])
        result = self._judge(index if decoded.is_volume else None, probs, check, decoded.notes)
        result.features = features
        heatmap = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0, 1)
        summary = attention_summary(heatmap, image01, regions)
        text = plain_explanation(summary, method, classes[t], float(probs[t]), result.predicted_class, result.confidence)
        return ExplainResult(result, method, classes[t], heatmap, image01, summary, text, regions[0])
