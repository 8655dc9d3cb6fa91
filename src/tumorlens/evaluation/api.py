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
        list of {"class", "confidence", "probabilities": {class: p}, "input_check": {...}}, one per
        image; for files also "image" and "path" (a file found unreadable is left out, with a warning
        naming it). An image the input check finds unlike a brain MRI slice gets "warning" (and a
        Python warning): its prediction is not meaningful.
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
    else:
        from tumorlens.inputcheck import check_images

        arrays = [np.asarray(a, np.float32) for a in images]
        rows = [prediction_row(tm.classes, p, c) for p, c in zip(tm.predict_images(arrays), check_images(arrays))]
    for i, r in enumerate(rows):
        if "warning" in r:
            warnings.warn(f"{r.get('path', f'image {i}')}: {r['warning']}", stacklevel=2)
    return rows
