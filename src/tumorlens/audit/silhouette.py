"""The silhouette version of a slice: only the outlines of the head and of the brain, white on black.

What it keeps is framing (where the head sits, how large, how tilted) and contour (the head's and
the brain's shape); every grey level inside is gone. A model that still classifies from it reads
framing and contour, not tissue (Tinauer et al. 2025 found skull-stripped MRI classifiers deciding
from the brain's contour alone). Drawn with OpenCV's contour tracing on the audit's own regions.
"""

from __future__ import annotations

import cv2
import numpy as np

from tumorlens.anatomy.regions import Regions

LINE_FRACTION = 1 / 80  # outline thickness as a fraction of the image side (2 px at 160-224 px)


def outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Bool image of the outer contours of a mask's components, `thickness` px wide."""
    m = np.ascontiguousarray(np.asarray(mask, np.uint8))
    canvas = np.zeros(m.shape, np.uint8)
    if m.any():
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, 1, thickness)
    return canvas.astype(bool)


def silhouette(regions: Regions, line_fraction: float = LINE_FRACTION) -> np.ndarray:
    """[0, 1] float32 display-space image: 1 on the head's and the brain's outlines, 0 elsewhere."""
    h, w = regions.shape
    t = max(1, int(round(min(h, w) * line_fraction)))
    lines = outline(regions.head, t) | outline(regions.brain, t)
    return lines.astype(np.float32)


def accuracy_vs_chance(truth, pred_edited, n_classes: int, margin: float, alpha: float) -> dict:
    """Accuracy on an edited version against chance (the better of the majority class and 1/K),
    one-sided binomial test (scipy), as the brain-blanked test of audit/shortcuts.py does it."""
    from scipy.stats import binomtest

    truth, pred_edited = np.asarray(truth), np.asarray(pred_edited)
    n = len(truth)
    if n == 0:
        return {"n": 0, "flagged": False}
    chance = max(float(np.bincount(truth, minlength=n_classes).max() / n), 1.0 / n_classes)
    hits = int(np.sum(truth == pred_edited))
    p = float(binomtest(hits, n, chance, alternative="greater").pvalue)
    acc = hits / n
    return {"n": n, "accuracy": acc, "chance": chance, "above_chance": acc - chance, "binomial_p": p,
            "flagged": bool(p < alpha and acc - chance >= margin)}
