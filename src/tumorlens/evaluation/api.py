"""tumorlens.predict(model, images): class probabilities from any model, for files or arrays."""

from __future__ import annotations

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
        list of {"class", "confidence", "probabilities": {class: p}} (plus "path" for files), one per image.
    """
    from tumorlens.models.loading import load_model

    tm = load_model(model, spec, trust_code=trust_code, **spec_keys)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    if isinstance(images, (str, Path)) or (isinstance(images, Sequence) and images and
                                            isinstance(images[0], (str, Path))):
        from tumorlens.evaluation.predict import read_paths

        paths = [images] if isinstance(images, (str, Path)) else list(images)
        samples = read_paths([Path(p) for p in paths]).samples
        arrays, names = [s.image for s in samples], [s.path for s in samples]
    else:
        arrays, names = [np.asarray(a, np.float32) for a in images], None
    probs = tm.predict_images(arrays)
    rows = []
    for i, p in enumerate(probs):
        k = int(p.argmax())
        row = {"class": tm.classes[k], "confidence": float(p[k]),
               "probabilities": {c: float(v) for c, v in zip(tm.classes, p)}}
        if names:
            row["path"] = names[i]
        rows.append(row)
    return rows
