"""tumorlens.explain(model, raw_images, ...): heatmaps from any model on raw 2-D images."""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import numpy as np

__all__ = ["explain"]


def explain(model: Any, images: Iterable[np.ndarray], method: str | None = None, targets: Any = None, *,
            spec: Any = None, trust_code: bool = False, **spec_keys: Any):
    """Heatmaps of a model's evidence on raw 2-D images, at the model's input size.

    Args:
        model: as for audit.
        images: 2-D arrays (raw intensities; the model's recipe prepares them).
        method: an explainer name (tumorlens.explain.METHODS); default: the localisation map where
            the model has a CAM layer, else occlusion (gradient-free).
        targets: None (the predicted class), a class name or index, or one per image.
        spec, trust_code, **spec_keys: as for audit.

    Returns:
        tumorlens.explain.Explanation: heatmaps (N, S, S) in [0, 1], targets, method, layer, and
        input_checks (tumorlens.inputcheck.InputCheck per image; a Python warning for each image
        that looks unlike a brain MRI slice).
    """
    from tumorlens.explain.core import explain as _explain
    from tumorlens.explain.methods import ExplainError, method_unavailable, primary_method
    from tumorlens.models.loading import load_model

    tm = load_model(model, spec, trust_code=trust_code, **spec_keys)
    method = method or primary_method(tm)
    why = method_unavailable(tm, method)
    if why:
        raise ExplainError(f"{method} cannot explain this model: it {why}; use a gradient-free method (occlusion)")
    from tumorlens.inputcheck import check_images

    arrays = [np.asarray(a, np.float32) for a in images]
    result = _explain(tm, tm.prepare(arrays), method=method, targets=targets)
    result.input_checks = check_images(arrays)
    for i, c in enumerate(result.input_checks):
        if not c.ok:
            warnings.warn(f"image {i}: {c.message()}", stacklevel=2)
    return result
