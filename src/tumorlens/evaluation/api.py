"""tumorlens.predict(model, images): class probabilities from any model, for files or arrays."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["predict"]


def predict(model: Any, images: Any, *, spec: Any = None, trust_code: bool = False, **spec_keys: Any) -> list[dict]:
    """Class probabilities for images.

    Args:
        model: as for audit.
        images: a file or folder path, a list of paths, a 2-D array or a list of 2-D arrays.
        spec, trust_code, **spec_keys: as for audit.

    Returns:
        list of {"class", "confidence", "probabilities": {class: p}}, one per image; for files also
        "image" and "path" (a file found unreadable is left out, with a warning naming it).
    """
    from tumorlens.evaluation.predict import predict_samples, prediction_row, read_paths
    from tumorlens.models.loading import load_model

    tm = load_model(model, spec, trust_code=trust_code, **spec_keys)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    if isinstance(images, (str, Path)) or (isinstance(images, Sequence) and images and
                                            isinstance(images[0], (str, Path))):
        paths = [images] if isinstance(images, (str, Path)) else list(images)
        rows, skipped = predict_samples(tm, read_paths([Path(p) for p in paths]))
        for s in skipped:
            warnings.warn(f"skipped {s['path']}: {s['reason']}", stacklevel=2)
        return rows
    return [prediction_row(tm.classes, p) for p in tm.predict_images([np.asarray(a, np.float32) for a in images])]
