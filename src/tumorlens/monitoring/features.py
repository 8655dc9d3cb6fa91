"""What the audit trail keeps of each prediction for monitoring: a few numbers about the input and the
answer, never pixels.

Input: intensity statistics within the head (mean, spread, 10th and 90th percentile, and how sharp
the head's texture is: blur, noise, compression and k-space artifacts change it), the head's share of
the picture, the background's mean brightness (ghosts and spikes light it up), the image size, and the
input check's verdict and score. Output: predicted class, confidence (columns of their own) and the
normalised entropy of the probabilities.

The intensities are those of a STATS_SIZE px copy stretched to [0, 1] between its 1st and 99th
percentile, as the input check measures them (serve/ood.py), so a file's bit depth or a linear
rescaling does not count as drift, while a changed contrast curve, window or noise does. The head is
the audit's head mask (anatomy.regions.head_mask) on that copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from tumorlens.anatomy.regions import head_mask

STATS_SIZE = 128

# The numeric features drift is tested on, in report order; `check_ok` and the class are counted instead.
NUMERIC = ("head_mean", "head_std", "head_p10", "head_p90", "head_sharpness", "head_fraction", "background_mean",
           "width", "height", "check_score", "confidence", "entropy")
LABELS = {
    "head_mean": "mean intensity in the head", "head_std": "intensity spread in the head",
    "head_p10": "10th percentile in the head", "head_p90": "90th percentile in the head",
    "head_sharpness": "texture sharpness in the head", "head_fraction": "head share of the image",
    "background_mean": "background brightness", "width": "image width (px)", "height": "image height (px)",
    "check_score": "input check score", "confidence": "confidence", "entropy": "normalised entropy",
}


def _stretched(image: np.ndarray) -> np.ndarray | None:
    img = np.asarray(image, dtype=np.float32)
    interp = cv2.INTER_AREA if max(img.shape) > STATS_SIZE else cv2.INTER_LINEAR
    small = cv2.resize(img, (STATS_SIZE, STATS_SIZE), interpolation=interp)
    lo, hi = np.percentile(small, [1, 99])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        return None
    return np.clip((small - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def input_features(image: np.ndarray, check=None) -> dict:
    """The input's numbers. check: the InputCheck the service computed for this image (its `ok`,
    and its `score` where the check has one); None leaves those features out."""
    image = np.asarray(image)
    out: dict = {"height": int(image.shape[0]), "width": int(image.shape[1])}
    if check is not None:
        score = getattr(check, "score", None)
        out["check_ok"] = bool(check.ok)
        out["check_score"] = None if score is None else round(float(score), 5)
    s = _stretched(image)
    head = head_mask(s) if s is not None else None
    if head is None or not head.any():
        return {**out, "head_fraction": 0.0}
    inside = s[head]
    p10, p90 = np.percentile(inside, [10, 90])
    # mean |Laplacian| inside the head (eroded, so the head's own outline does not count) per unit of
    # mean intensity: texture, noise and ringing raise it, blur lowers it
    core = cv2.erode(head.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    lap = np.abs(cv2.Laplacian(s, cv2.CV_32F, ksize=3))
    sharp = float(lap[core].mean() / max(float(inside.mean()), 1e-3)) if core.any() else None
    background = s[~head]
    values = {"head_mean": inside.mean(), "head_std": inside.std(), "head_p10": p10, "head_p90": p90,
              "head_sharpness": sharp, "head_fraction": head.mean(),
              "background_mean": background.mean() if background.size else None}
    return {**out, **{k: None if v is None else round(float(v), 5) for k, v in values.items()}}


def output_features(probabilities: Mapping[str, float] | Sequence[float] | None) -> dict:
    """Normalised entropy of the answer's probabilities (1 = every class equally likely)."""
    if probabilities is None:
        return {}
    p = np.asarray(list(probabilities.values()) if isinstance(probabilities, Mapping) else probabilities, np.float64)
    if len(p) < 2:
        return {}
    p = np.clip(p / max(p.sum(), 1e-12), 1e-12, 1.0)
    return {"entropy": round(float(-(p * np.log(p)).sum() / np.log(len(p))), 5)}
