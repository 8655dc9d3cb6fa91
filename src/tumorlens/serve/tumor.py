"""The segmenter's tumor mask as a response: found or not, its area, bounding box and outline
polygons in the uploaded image's pixels; and, for an explanation, the share of the heatmap's
energy inside it (the audit's energy_tumor, tumorlens.audit.attention)."""

from __future__ import annotations

import cv2
import numpy as np

from tumorlens.anatomy.regions import Regions
from tumorlens.audit.attention import analyse_attention
from tumorlens.data.preprocess import PreprocessRecipe

NOTE = "segmenter outline (research use; misses small tumors)"
# Douglas-Peucker tolerance, as a fraction of the image's longer side: about 1 px at 256 px, so the
# outline keeps the tumor's shape while a large slice does not send thousands of points.
SIMPLIFY_FRACTION = 0.004


def outline(mask: np.ndarray, version: str | None) -> dict:
    """The TumorOutline shape (schemas.py) of a bool mask at the uploaded image's size."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    found = bool(mask.any())
    polygons: list[list[list[int]]] = []
    bbox = None
    if found:
        m8 = mask.astype(np.uint8)
        # outer boundaries only: a ring-enhancing tumor's necrotic core is part of the tumor
        contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        eps = max(0.5, SIMPLIFY_FRACTION * max(h, w))
        for c in sorted(contours, key=cv2.contourArea, reverse=True):
            poly = cv2.approxPolyDP(c, eps, closed=True).reshape(-1, 2)
            polygons.append(poly.astype(int).tolist())
        x, y, bw, bh = cv2.boundingRect(m8)
        bbox = {"x": int(x), "y": int(y), "width": int(bw), "height": int(bh)}
    return {"found": found, "area_fraction": round(float(mask.mean()), 5), "bbox": bbox, "polygons": polygons,
            "segmenter": version, "note": NOTE}


def energy_inside(heatmap: np.ndarray, regions: Regions, mask: np.ndarray, image: np.ndarray,
                  recipe: PreprocessRecipe) -> float | None:
    """Share of the heatmap's energy inside the predicted tumor, None when no tumor was found or
    the heatmap is empty. The mask (uploaded size) is brought to the heatmap's geometry with the
    classifier's own recipe, so both describe the same pixels."""
    if not np.asarray(mask).any():
        return None
    tumor = recipe.mask(mask, image)
    if not tumor.any():  # the tumor lies outside the classifier's head crop
        return 0.0
    share = analyse_attention(heatmap, regions, tumor=tumor).energy_tumor
    return round(float(share), 4) if np.isfinite(share) else None


def image_box(image: np.ndarray, recipe: PreprocessRecipe) -> dict:
    """The part of the uploaded image that the explanation's image_png shows (the classifier's head
    crop, or the whole image), so a client can lay the outline over it."""
    h, w = np.asarray(image).shape
    box = recipe.head_box(image)
    t, b, l, r = box if box is not None else (0, h, 0, w)
    return {"x": int(l), "y": int(t), "width": int(r - l), "height": int(b - t)}
