"""Signed attributions -> heatmaps in [0, 1], one scale per image."""

from __future__ import annotations

import numpy as np


def attribution_heatmaps(attr: np.ndarray, sign: str = "positive", scale: str = "max",
                         percentile: float = 99.5) -> np.ndarray:
    """(N, H, W) attributions -> (N, H, W) float32 heatmaps in [0, 1].

    sign "positive" keeps the evidence for the target class (what a user asks: where did it look
    for this class?); "absolute" keeps magnitude of either sign.
    scale "max" divides by each image's largest value (block-wise maps: occlusion, LIME);
    "percentile" by a high percentile of the non-zero values, so that one extreme pixel of a
    pixel-wise gradient map (IG, GradientSHAP, saliency) does not darken all the others.
    An image without any evidence gets an all-zero heatmap.
    """
    a = np.nan_to_num(np.asarray(attr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    a = np.abs(a) if sign == "absolute" else np.clip(a, 0.0, None)
    out = np.zeros_like(a, dtype=np.float32)
    for i, m in enumerate(a):
        nz = m[m > 0]
        if nz.size == 0:
            continue
        top = float(np.percentile(nz, percentile)) if scale == "percentile" else float(nz.max())
        if top <= 0:
            top = float(nz.max())
        out[i] = np.clip(m / top, 0.0, 1.0)
    return out


def clean_cam(cams: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam already min-max scales each map; keep it finite and inside [0, 1]."""
    return np.clip(np.nan_to_num(np.asarray(cams, dtype=np.float32), nan=0.0), 0.0, 1.0)
