"""Figures of the attention atlas and the strategy clusters: mean heatmaps over mean images,
drawn with the report's own overlay and gallery (audit/figures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorlens.audit import figures as F
from tumorlens.audit.atlas import hot_spot


def mean_tile(m: dict) -> np.ndarray:
    """One mean heatmap (scaled to its own maximum) over its mean image, with the brain and head
    outlines of the mean region map and the hot spot as a cross."""
    heat = m["heatmap"]
    heat_u8 = (np.clip(heat / heat.max(), 0, 1) * 255).astype(np.uint8) if heat.max() > 0 else np.zeros(heat.shape, np.uint8)
    img_u8 = (np.clip(m["image"], 0, 1) * 255).astype(np.uint8)
    spot = hot_spot(heat, m["region_map"])
    return F.overlay_with_regions(img_u8, heat_u8, m["region_map"], None, (spot["y"], spot["x"]))


def _energy_line(e: dict) -> str:
    parts = [f"{z[:4]} {e[z]:.0%}" for z in ("background", "skull", "brain", "tumor") if e.get(z) is not None]
    return " ".join(parts)


def atlas_figure(summary: dict, maps: dict, classes: list[str], path: Path) -> Path:
    """Two rows: per true class, then per predicted class (one tile per class present)."""
    tiles, caps = [], []
    for group, label in (("by_true_class", "true"), ("by_predicted_class", "predicted")):
        for name in classes:
            if name not in maps[group]:
                continue
            row = summary[group][name]
            hs = row["hot_spot"]
            tiles.append(mean_tile(maps[group][name]))
            caps.append(f"{label} {name} (n={row['n']})\n{_energy_line(row['energy'])}\n"
                        f"hot spot: {hs['zone']} ({hs['x_frac']:.2f}, {hs['y_frac']:.2f}), x{hs['value']:.1f}")
    cols = max(1, len(maps["by_true_class"]))
    return F.gallery(tiles, caps, path, cols=cols, title="Attention atlas: mean heatmap over the mean image",
                     tile_px=260)


def strategies_figure(summary: dict, maps: list, path: Path, max_tiles: int = 16) -> Path:
    """One tile per cluster, flagged first (the order of summary['clusters'])."""
    tiles, caps = [], []
    for cl, m in list(zip(summary["clusters"], maps))[:max_tiles]:
        comp = ", ".join(f"{k} {v}" for k, v in sorted(cl["classes"].items(), key=lambda kv: -kv[1]))
        tiles.append(mean_tile(m))
        caps.append(f"#{cl['id']} pred {cl['class']} n={cl['n']}{'  FLAGGED' if cl['flagged'] else ''}\n"
                    f"truth: {comp}\n{_energy_line(cl['energy'])}")
    return F.gallery(tiles, caps, path, cols=4, title="Strategies (SpRAy clusters): flagged first", tile_px=240)
