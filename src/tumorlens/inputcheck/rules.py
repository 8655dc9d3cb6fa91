"""The cheap rules of the input check: does the image look like a brain MRI slice at all?

The learned check beside them (detector.py) catches what they cannot (see "What it cannot tell").

What it can tell (thresholds from all 7,019 Kaggle and 3,064 figshare slices, benchmarks/
bench_service.py reports how many real slices each rule flags):
- colour photographs: MRI is grayscale; clearly coloured pixels -> refused;
- frame-filling pictures (X-rays of the chest or limbs, photos, documents): an MRI slice shows the
  head on a dark background, so its frame edge is dark and a good share of pixels is near black;
- blank images (one value everywhere);
- pictures without a head's outline (issue 19: a grey flower photograph, dark noise, a chest X-ray
  on a dark background were answered "ok"): the audit's own head segmentation (tumorlens.anatomy.regions) is run
  on the image, and the head it finds must look like one: its outline not a rectangle (a radiograph's
  plate, a photo pasted on black), close to an ellipse, and the background around it dark.
What it cannot tell: a grayscale picture of a rounded object on a dark background (a hand X-ray,
a CT slice, an abdominal MR, a synthetic head phantom) can pass; the learned check is for those.
"""

from __future__ import annotations

import cv2
import numpy as np

from tumorlens.anatomy.regions import segment_regions
from tumorlens.inputcheck.result import Finding, InputCheck

STATS_SIZE = 128
# Share of clearly coloured pixels: the most coloured real slice has 0.04 (JPEG chroma noise).
COLOUR_REFUSE = 0.10
# Mean [0, 1] intensity of the frame edge (outer ~5 %): real slices stay below 0.37 except 3 of
# 10,083 (coronal slices cropped tight to the skull, measured 0.50 and 0.72).
EDGE_MAX = 0.45
# Share of near-black pixels (< 0.1 after a 1-99 % percentile stretch): real slices keep above 0.05.
DARK_MIN = 0.03
# The head outline, on the same 128 px stretched image (thresholds from 3,000 random Kaggle and
# figshare slices, then checked on all 10,083 by bench_service.py; flower, noise and X-ray in tests):
HEAD_RECT_MAX = 0.95  # head area / its minimum-area rectangle: real slices at most 0.92, a pasted X-ray 1.0
HEAD_ELLIPSE_MIN = 0.66  # IoU of the head with its fitted ellipse: 99.9 % of real slices above 0.67
_OPEN_DISC = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
BACKGROUND_MAX = 0.16  # mean stretched intensity outside the head: real slices below 0.094 (99.5 %); the flower 0.164


def head_shape(s: np.ndarray) -> dict:
    """How head-like the audit's head segmentation of the [0, 1] image is (see module docstring)."""
    regions = segment_regions(s)
    head = regions.head
    area = int(head.sum())
    if area < 0.01 * head.size or area == head.size:
        return {"head_share": area / head.size, "head_rect": None, "head_ellipse": None, "background_mean": None}
    # The outline is judged on the head mask opened by a 5 px disc (its largest part): thin lines
    # joined to the head, such as the frame line some exports draw round the picture, then no longer
    # count as head (they made 16 of the 27 Kaggle Training slices the rules flagged fail the ellipse test).
    opened = cv2.morphologyEx(head.astype(np.uint8), cv2.MORPH_OPEN, _OPEN_DISC)
    n, labels, parts, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    shape = (labels == 1 + int(np.argmax(parts[1:, cv2.CC_STAT_AREA]))) if n > 1 else head
    contours, _ = cv2.findContours(shape.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    _, (w, h), _ = cv2.minAreaRect(outline)
    ellipse = np.zeros(head.shape, np.uint8)
    if len(outline) >= 5:
        cv2.ellipse(ellipse, cv2.fitEllipse(outline), 1, -1)
    ellipse = ellipse.astype(bool)
    return {"head_share": area / head.size, "head_rect": float(shape.sum() / max(w * h, 1.0)),
            "head_ellipse": float((shape & ellipse).sum() / max((shape | ellipse).sum(), 1)),
            "background_mean": float(s[regions.background].mean())}


def image_statistics(image: np.ndarray) -> dict:
    """Edge brightness, dark share and head shape of a 2-D image after a robust [0, 1] stretch."""
    img = np.asarray(image, dtype=np.float32)
    interp = cv2.INTER_AREA if max(img.shape) > STATS_SIZE else cv2.INTER_LINEAR
    small = cv2.resize(img, (STATS_SIZE, STATS_SIZE), interpolation=interp)
    lo, hi = np.percentile(small, [1, 99])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        return {"blank": True, "edge_mean": 0.0, "dark_share": 1.0}
    s = np.clip((small - lo) / (hi - lo), 0.0, 1.0)
    edge = np.ones_like(s, dtype=bool)
    m = STATS_SIZE // 20
    edge[m:-m, m:-m] = False
    return {"blank": False, "edge_mean": float(s[edge].mean()), "dark_share": float(np.mean(s < 0.1)),
            **head_shape(s.astype(np.float32))}


def _not_a_head(stats: dict) -> str | None:
    if stats["head_rect"] is None:
        return "no head outline was found"
    if stats["head_rect"] > HEAD_RECT_MAX:
        return (f"the bright area is a rectangle ({stats['head_rect']:.2f} of its bounding box filled; "
                f"head outlines stay below {HEAD_RECT_MAX})")
    if stats["head_ellipse"] < HEAD_ELLIPSE_MIN:
        return (f"the bright area is not head-shaped (overlap with an ellipse {stats['head_ellipse']:.2f}; "
                f"brain slices have over {HEAD_ELLIPSE_MIN})")
    if stats["background_mean"] > BACKGROUND_MAX:
        return (f"the background around the object is not dark (mean {stats['background_mean']:.3f}; "
                f"brain MRI slices stay below {BACKGROUND_MAX})")
    return None


def check_rules(image: np.ndarray, colour: float = 0.0, meta: dict | None = None) -> InputCheck:
    """The rules' verdict on one 2-D image; colour: share of clearly coloured pixels of the file it came
    from; meta: DICOM modality and body_part where known."""
    meta = meta or {}
    stats = image_statistics(image)
    stats["colour_share"] = round(float(colour), 4)
    out = InputCheck(stats=stats)
    if stats["blank"]:
        out.refuse = True
        out.findings.append(Finding("blank_image", "the image is blank (one intensity everywhere)"))
        return out
    if colour > COLOUR_REFUSE:
        out.refuse = True
        out.findings.append(Finding(
            "colour_image",
            f"{colour:.0%} of the pixels are clearly coloured: this looks like a colour photograph, "
            "not an MRI slice (MRI is grayscale); no tumor class is given"))
    if stats["edge_mean"] > EDGE_MAX:
        out.unlike_training = True
        out.findings.append(Finding(
            "unlike_training_data",
            f"the picture reaches the frame edge (edge brightness {stats['edge_mean']:.2f}, brain MRI "
            f"slices stay below {EDGE_MAX}): this does not look like a head on a dark background"))
    elif stats["dark_share"] < DARK_MIN:
        out.unlike_training = True
        out.findings.append(Finding(
            "unlike_training_data",
            f"almost no dark background ({stats['dark_share']:.1%} of pixels; brain MRI slices have "
            f"over {DARK_MIN:.0%}): this does not look like a head on a dark background"))
    elif (reason := _not_a_head(stats)) is not None:
        out.unlike_training = True
        out.findings.append(Finding("unlike_training_data", f"{reason}: this does not look like a brain MRI slice"))
    modality = (meta.get("modality") or "").upper()
    if modality and modality != "MR":
        out.unlike_training = True
        out.findings.append(Finding(
            "unlike_training_data", f"the DICOM modality is {modality}, the model was trained on MR slices only"))
    body = (meta.get("body_part") or "").upper()
    if body and body not in {"HEAD", "BRAIN", "SKULL", "HEADNECK", "NEURO"}:
        out.unlike_training = True
        out.findings.append(Finding(
            "unlike_training_data", f"the DICOM body part is {body}, the model was trained on brain slices only"))
    return out
