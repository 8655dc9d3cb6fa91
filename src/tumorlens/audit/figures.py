"""Figures of the audit report; each function draws one PNG from numbers the audit computed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tumorlens.audit.attention import FOCUS_LABELS

FOCUS_COLOURS = {"tumor": "#2e7d32", "brain outside the tumor": "#90caf9", "brain": "#bbdefb",
                 "skull or edge": "#ef6c00", "background": "#c62828"}


def _save(fig, path: Path) -> Path:
    # galleries are photographs with colour maps: JPEG keeps report.html small; charts stay PNG
    kwargs = {"pil_kwargs": {"quality": 85}} if str(path).endswith(".jpg") else {}
    fig.savefig(path, dpi=100, bbox_inches="tight", **kwargs)
    plt.close(fig)
    return Path(path)


def overlay_with_regions(image_u8: np.ndarray, heat_u8: np.ndarray, region_map: np.ndarray,
                         tumor: np.ndarray | None, peak: tuple[int, int] | None = None) -> np.ndarray:
    """Heatmap over the slice (tumorlens.explain.overlay), brain outline in white, tumor in green,
    the heatmap peak as a cross. Upscaled 2x so outlines stay thin."""
    from tumorlens.explain import overlay

    rgb = overlay(image_u8.astype(np.float32) / 255, heat_u8.astype(np.float32) / 255, mask=None, alpha=0.45)
    rgb = np.ascontiguousarray(cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
    for m, colour in (((region_map == 2), (255, 255, 255)), ((region_map > 0), (160, 160, 160)),
                      (tumor, (0, 255, 0))):
        if m is None or not np.any(m):
            continue
        big = cv2.resize(m.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, colour, 1)
    if peak is not None:
        cv2.drawMarker(rgb, (2 * peak[1], 2 * peak[0]), (255, 255, 255), cv2.MARKER_TILTED_CROSS, 14, 2)
    return rgb


def gallery(tiles: Sequence[np.ndarray], captions: Sequence[str], path: Path, cols: int = 4, title: str = "",
            tile_px: int = 300) -> Path:
    """A grid of image tiles with multi-line captions above each, drawn with Pillow (a matplotlib
    grid of this size takes seconds to lay out; this takes milliseconds). Saved as JPEG or PNG by
    the file name."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    line_h = 15
    cap_lines = max((c.count("\n") + 1 for c in captions), default=1)
    cap_h = cap_lines * line_h + 6
    n = len(tiles)
    rows = max(1, -(-n // cols))
    title_h = 28 if title else 0
    pad = 8
    canvas = Image.new("RGB", (cols * (tile_px + pad) + pad, title_h + rows * (tile_px + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 6), title, fill="black", font=ImageFont.load_default(size=16))
    for k, (tile, cap) in enumerate(zip(tiles, captions)):
        r, c = divmod(k, cols)
        x = pad + c * (tile_px + pad)
        y = title_h + pad + r * (tile_px + cap_h + pad)
        for j, line in enumerate(cap.split("\n")):
            draw.text((x, y + j * line_h), line, fill="black", font=font)
        arr = np.asarray(tile)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        img = Image.fromarray(arr.astype(np.uint8)).resize((tile_px, tile_px), Image.Resampling.BILINEAR)
        canvas.paste(img, (x, y + cap_h))
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        canvas.save(path, quality=85)
    else:
        canvas.save(path)
    return path


def focus_bars(counts_correct: dict, counts_wrong: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.2, 2.6))
    groups = [("correct", counts_correct), ("misclassified", counts_wrong)]
    for y, (name, counts) in enumerate(groups):
        total = max(sum(counts.values()), 1)
        left = 0.0
        for f in FOCUS_LABELS:
            w = counts.get(f, 0) / total
            ax.barh(y, w, left=left, color=FOCUS_COLOURS[f], label=f if y == 0 else None, edgecolor="white")
            if w > 0.06:
                ax.text(left + w / 2, y, f"{w:.0%}", ha="center", va="center", fontsize=8)
            left += w
        ax.text(1.01, y, f"n={sum(counts.values())}", va="center", fontsize=8)
    ax.set_yticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of images by where the map's peak lies")
    ax.legend(ncol=5, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, 1.35), frameon=False)
    return _save(fig, path)


def energy_boxes(df, path: Path) -> Path:
    cols = [("energy_background", "background"), ("energy_skull", "skull/scalp"), ("energy_brain", "brain")]
    if "energy_tumor" in df and df["energy_tumor"].notna().any():
        cols.append(("energy_tumor", "tumor"))
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    data = [df[c].dropna().to_numpy() for c, _ in cols]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(cols) + 1), [n for _, n in cols])
    ax.set_ylabel("share of heatmap energy")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def shortcut_bars(sc: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    names = [("full", "full image"), ("brain_only", "only the brain"), ("brain_blanked", "brain blanked")]
    vals = [sc["accuracy"][k] for k, _ in names]
    colours = ["#1565c0", "#1565c0", "#c62828" if sc["flagged"] else "#757575"]
    ax.bar([n for _, n in names], vals, color=colours)
    for i, v in enumerate(vals):
        ax.text(i, v + 0.02, f"{v:.0%}", ha="center", fontsize=9)
    ax.axhline(sc["chance"], color="k", ls="--", lw=1)
    ax.text(2.45, sc["chance"] + 0.015, f"chance {sc['chance']:.0%}", ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    return _save(fig, path)


def delta_drop_boxes(df, path: Path) -> Path:
    d = df[df["delta_drop"].notna()]
    classes = sorted(d["truth"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    for ax, col, label in ((axes[0], "delta_drop", "Delta-Drop: P(true) lost when the tumor is removed"),
                           (axes[1], "delta_focus", "Delta-Focus: P(true) with the tumor alone")):
        data, names = [], []
        for c in classes:
            for ok, tag in ((True, "ok"), (False, "wrong")):
                v = d[(d["truth"] == c) & (d["correct"] == ok)][col].to_numpy()
                if len(v):
                    data.append(v)
                    names.append(f"{c}\n{tag} ({len(v)})")
        if data:
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.axhline(0, color="gray", lw=0.8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def curves_figure(curves: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    for method, c in curves.items():
        axes[0].plot(c["fractions"], c["deletion"], label=method)
        axes[1].plot(c["fractions"], c["insertion"], label=method)
    axes[0].set_title("deletion (lower area = more faithful)", fontsize=9)
    axes[1].set_title("insertion (higher area = more faithful)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("share of pixels, most important first")
        ax.set_ylabel("P(explained class)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def sanity_figure(sanity: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    for method, r in sanity.items():
        steps = r["steps"]
        if not steps:
            continue
        x = [s["layers_randomised"] / s["of_layers"] for s in steps]
        axes[0].plot(x, [s["spearman"] for s in steps], marker="o", label=method)
        axes[1].plot(x, [s["ssim"] for s in steps], marker="o", label=method)
    axes[0].axhline(0.5, color="k", ls="--", lw=0.8)
    axes[1].axhline(0.7, color="k", ls="--", lw=0.8)
    axes[0].set_title("rank correlation with the original maps", fontsize=9)
    axes[1].set_title("SSIM with the original maps", fontsize=9)
    for ax in axes:
        ax.set_xlabel("share of layers randomised (from the top)")
        ax.set_ylim(-0.2, 1.05)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
