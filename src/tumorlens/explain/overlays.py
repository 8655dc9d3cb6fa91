"""Pictures of explanations: a heatmap over the MRI with the tumor outline, and one figure that
puts several methods side by side for one image."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from tumorlens.explain.methods import ExplainError

COLORMAPS = {
    "jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA, "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT,
    "plasma": cv2.COLORMAP_PLASMA, "parula": cv2.COLORMAP_PARULA,
}
OUTLINE_RGB = (0, 255, 0)  # green: stands apart from every colour of the jet/turbo maps' hot end


def _gray01(image01: np.ndarray) -> np.ndarray:
    img = np.asarray(image01, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise ExplainError(f"overlay needs a 2-D image; got shape {img.shape}")
    if img.max() > 1.0 + 1e-6 or img.min() < -1e-6:  # accept 0-255 or any range: show it scaled
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.nan_to_num(img)


def tumor_outline(rgb: np.ndarray, mask: np.ndarray, color=OUTLINE_RGB, thickness: int | None = None) -> np.ndarray:
    """Draw the outline of a boolean mask onto an RGB uint8 image (in place; returns it)."""
    h, w = rgb.shape[:2]
    m = np.asarray(mask)
    if m.shape != (h, w):
        m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    m = (m > 0).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if thickness is None:
        thickness = max(1, round(min(h, w) / 200))
    cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in color), thickness)
    return rgb


def overlay(image01: np.ndarray, heatmap: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.5,
            cmap: str = "jet") -> np.ndarray:
    """Heatmap blended over a grayscale image -> uint8 RGB (H, W, 3) at the image's size.

    alpha is the heatmap's opacity; where the heatmap is zero the MRI shows through unchanged,
    so a map that ignores a region leaves it readable. mask: tumor mask to outline, or None."""
    if cmap not in COLORMAPS:
        raise ExplainError(f"unknown colour map {cmap!r}; choose one of: {', '.join(COLORMAPS)}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ExplainError(f"alpha must lie in [0, 1]; got {alpha}")
    img = _gray01(image01)
    h, w = img.shape
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ExplainError(f"heatmap must be 2-D; got shape {heat.shape}")
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    gray = np.repeat((img * 255.0)[..., None], 3, axis=-1)
    colour = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), COLORMAPS[cmap]), cv2.COLOR_BGR2RGB)
    # Opacity grows with the heat, so cold areas keep the anatomy visible.
    a = (float(alpha) * np.sqrt(heat))[..., None]
    rgb = np.clip(gray * (1 - a) + colour.astype(np.float32) * a, 0, 255).astype(np.uint8)
    if mask is not None:
        tumor_outline(rgb, mask)
    return rgb


def compare_figure(image01: np.ndarray, heatmaps: Mapping[str, np.ndarray], mask: np.ndarray | None = None,
                   path: str | Path | None = None, title: str | None = None, alpha: float = 0.5, cmap: str = "jet",
                   cols: int = 5, captions: Mapping[str, str] | None = None):
    """Several methods' heatmaps for one image, side by side (the MRI itself first).

    Returns the matplotlib Figure; saves it as PNG when `path` is given."""
    from matplotlib.figure import Figure

    if not heatmaps:
        raise ExplainError("compare_figure needs at least one heatmap")
    panels: list[tuple[str, np.ndarray]] = []
    base = (np.clip(_gray01(image01), 0, 1) * 255).astype(np.uint8)
    base = np.repeat(base[..., None], 3, axis=-1)
    if mask is not None:
        tumor_outline(base, mask)
    panels.append(("image" + (" + tumor outline" if mask is not None else ""), base))
    for name, heat in heatmaps.items():
        cap = name if not captions or name not in captions else f"{name}\n{captions[name]}"
        panels.append((cap, overlay(image01, heat, mask=mask, alpha=alpha, cmap=cmap)))
    cols = max(1, min(cols, len(panels)))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.8 * rows + (0.4 if title else 0)), dpi=100)
    for k, (cap, rgb) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(rgb)
        ax.set_title(cap, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    return fig


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """uint8 RGB array -> PNG file (OpenCV writes BGR)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
