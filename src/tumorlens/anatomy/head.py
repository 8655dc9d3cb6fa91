"""The head's bounding box, for the preprocessing recipe's optional crop to the head.

A second, cheaper head detector than regions.segment_regions: the largest Otsu component of the
raw image (no smoothing, no hole filling), enough for a padded square box. It runs on the raw
image before resizing, where segment_regions' thresholds (tuned on display images) do not apply;
checkpoints trained with crop_to_head depend on this exact box, so it stays as it is.
"""

from __future__ import annotations

import cv2
import numpy as np


def head_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a square box 5 % larger than the head, or None (flat image or
    nothing found)."""
    img = np.asarray(image, dtype=np.float32)
    if img.max() <= img.min():
        return None
    u8 = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, binary = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
    if n <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[largest, :4]
    side = int(max(w, h) * 1.05) + 2
    cy, cx = y + h // 2, x + w // 2
    H, W = img.shape
    side = min(side, max(H, W))
    t = int(np.clip(cy - side // 2, 0, max(H - side, 0)))
    l = int(np.clip(cx - side // 2, 0, max(W - side, 0)))
    return t, min(t + side, H), l, min(l + side, W)
