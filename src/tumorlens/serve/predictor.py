"""The model behind the service: loaded once, shared by a fixed number of inference workers.

Why replicas, one request each: CAM explainers attach hooks to the network they explain, so two
requests must never share one network; and on a small busy machine one torch thread per request,
with as many requests in flight as there are workers (default 2), keeps every core busy without
the spin-waiting of several intra-op threads fighting for a core (measured here: batch-1
EfficientNet-Lite0 took 51 ms with 1 thread and 450 ms with 2 while a training run held the
cores). Routes call these methods from worker threads, so the event loop keeps answering
(health checks, uploads in flight) while the models work.
"""

from __future__ import annotations

import copy
import queue
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from tumorlens.models.checkpoint import TumorModel
from tumorlens.serve.attention import AttentionSummary, attention_summary, plain_explanation
from tumorlens.serve.decode import DecodedInput
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.ood import Finding, InputCheck, check_input
from tumorlens.serve.settings import ServeSettings


@dataclass
class SliceResult:
    index: int | None  # slice/frame index for volumes, None for a single image
    status: str  # ok | uncertain | out_of_distribution | refused
    predicted_class: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    warnings: list[Finding] = field(default_factory=list)
    check: InputCheck | None = None

    def to_dict(self) -> dict:
        d = {"status": self.status, "predicted_class": self.predicted_class, "confidence": self.confidence,
             "probabilities": self.probabilities, "warnings": [w.to_dict() for w in self.warnings]}
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
        self._free: queue.Queue[TumorModel] = queue.Queue()
        for replica in self.replicas:
            self._free.put(replica)

    @contextmanager
    def replica(self):
        """A network no other request is using, for as long as the block runs."""
        net = self._free.get()
        try:
            yield net
        finally:
            self._free.put(net)

    def warm_up(self) -> None:
        """A forward pass and a Grad-CAM per replica at start-up: the first user must not pay for
        lazy initialisation (importing the explainer libraries alone takes seconds)."""
        from tumorlens.explain import explain

        size = self.model.recipe.size
        yy, xx = np.mgrid[:size, :size]
        head = (((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.33 * size)) ** 2 < 1).astype(np.float32)
        x = self.model.prepare([head])
        for replica in self.replicas:
            replica.probabilities(x)
            explain(replica, x, method="gradcam")

    # -- prediction ----------------------------------------------------------------------------
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
        checks = [check_input(img, decoded.colour_fraction, decoded.meta) for img in decoded.images]
        usable = [i for i, c in enumerate(checks) if not c.refuse]
        probs: dict[int, np.ndarray] = {}
        if usable:
            x = self.model.prepare([decoded.images[i] for i in usable])
            with self.replica() as model:
                p = model.probabilities(x)
            probs = dict(zip(usable, p))
        volume = decoded.is_volume
        return [self._judge(i if volume else None, probs.get(i), c, decoded.notes) for i, c in enumerate(checks)]

    # -- explanation ---------------------------------------------------------------------------
    def explain(self, decoded: DecodedInput, slice_index: int | None, method: str, target: str | None) -> ExplainResult:
        from tumorlens.explain import explain  # the explainer registry (pytorch-grad-cam / Captum adapters)

        if decoded.is_volume:
            n = len(decoded.images)
            index = n // 2 if slice_index is None else slice_index
            if not 0 <= index < n:
                raise ServiceError(422, "invalid_slice", f"slice {slice_index} does not exist; the volume has {n} slices (0-{n - 1})")
        else:
            index = 0
        image = decoded.images[index]
        check = check_input(image, decoded.colour_fraction, decoded.meta)
        if check.refuse:
            raise InputRefused(self._judge(index if decoded.is_volume else None, None, check, decoded.notes))
        classes = self.model.classes
        if target is not None and target not in classes:
            raise ServiceError(422, "invalid_target", f"unknown target class {target!r}; choose one of: {', '.join(classes)}")
        x = self.model.prepare([image])
        with self.replica() as model:
            probs = model.probabilities(x)[0]
            t = classes.index(target) if target is not None else int(np.argmax(probs))
            heatmap = explain(model, x, method=method, targets=[t]).heatmaps[0]
        result = self._judge(index if decoded.is_volume else None, probs, check, decoded.notes)
        image01 = self.model.recipe.display(image)
        heatmap = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0, 1)
        summary = attention_summary(heatmap, image01)
        text = plain_explanation(summary, method, classes[t], float(probs[t]), result.predicted_class, result.confidence)
        return ExplainResult(result, method, classes[t], heatmap, image01, summary, text)
