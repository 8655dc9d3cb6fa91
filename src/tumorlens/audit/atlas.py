"""The attention atlas: where a model's attention gathers, per true class and per predicted class.

For each group of images: the mean heatmap in image coordinates (the recipe's geometry, so a pixel
is the same place in every image), the mean image it is drawn over, the mean region map, and the
share of attention energy in background, skull, brain (tumor included) and tumor. A cue at a fixed
place (a marker, a burned-in label, a corner, a scanner logo) is a hot spot there in every image of
a class, so it survives the averaging while attention on tumors, which move, spreads out.

Each image's heatmap is scaled to sum 1 before averaging (every image weighs the same, whatever
its map's range); energy shares are those of each image's map in its own regions, averaged. The
peak of the mean map, and the zone the mean region map has there, say where the hot spot is.
"""

from __future__ import annotations

import numpy as np

ZONES = ("background", "skull", "brain", "tumor")
LABEL_BACKGROUND, LABEL_SKULL, LABEL_BRAIN = 0, 1, 2  # Regions.label_map()


def region_energy(heatmap: np.ndarray, region_map: np.ndarray, tumor: np.ndarray | None = None) -> dict[str, float]:
    """Share of a (non-negative) heatmap's energy in background / skull / brain (tumor included) /
    tumor; tumor is NaN without a tumor mask, everything NaN for an all-zero map."""
    hm = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0, None)
    if hm.shape != region_map.shape:
        raise ValueError(f"heatmap shape {hm.shape} differs from region map shape {region_map.shape}")
    total = hm.sum()
    if total <= 0:
        return {z: float("nan") for z in ZONES}
    out = {"background": hm[region_map == LABEL_BACKGROUND].sum() / total,
           "skull": hm[region_map == LABEL_SKULL].sum() / total,
           "brain": hm[region_map == LABEL_BRAIN].sum() / total,
           "tumor": hm[np.asarray(tumor, bool)].sum() / total if tumor is not None and np.any(tumor) else np.nan}
    return {k: float(v) for k, v in out.items()}


def energies(heatmaps, region_maps, tumors=None) -> np.ndarray:
    """(n, 4) region energies in ZONES order."""
    tumors = [None] * len(heatmaps) if tumors is None else tumors
    return np.array([[region_energy(h, r, t)[z] for z in ZONES] for h, r, t in zip(heatmaps, region_maps, tumors)],
                    np.float64).reshape(len(heatmaps), len(ZONES))


def mean_energy(e: np.ndarray) -> dict[str, float | None]:
    """Column means of an (n, 4) energy array, None for a zone no image has (tumor without masks)."""
    out = {}
    for j, z in enumerate(ZONES):
        col = e[:, j] if len(e) else np.zeros(0)
        col = col[np.isfinite(col)]
        out[z] = float(col.mean()) if len(col) else None
    return out


def mean_maps(heatmaps, images, region_maps) -> dict[str, np.ndarray]:
    """Mean of sum-normalised heatmaps, mean image ([0, 1]) and the region map most images have at
    each pixel, over one group of images (arrays or sequences of (S, S) arrays, uint8 or float)."""
    n = len(heatmaps)
    if n == 0:
        raise ValueError("mean_maps needs at least one image")
    shape = np.asarray(heatmaps[0]).shape
    heat = np.zeros(shape, np.float64)
    img = np.zeros(shape, np.float64)
    votes = np.zeros((3,) + shape, np.int32)
    for h, im, r in zip(heatmaps, images, region_maps):
        h = np.clip(np.asarray(h, np.float64), 0, None)
        s = h.sum()
        if s > 0:
            heat += h / s
        im = np.asarray(im, np.float64)
        img += im / 255 if np.asarray(im).dtype == np.uint8 or im.max() > 1.0 else im
        for lab in range(3):
            votes[lab] += np.asarray(r) == lab
    heat /= n
    return {"heatmap": heat * heat.size,  # 1 = uniform attention, > 1 = more than an even share
            "image": img / n, "region_map": votes.argmax(0).astype(np.uint8)}


def hot_spot(mean_heatmap: np.ndarray, region_map: np.ndarray) -> dict:
    """Peak of a mean heatmap: position (pixels and fractions of the side), its value (x uniform), zone."""
    y, x = np.unravel_index(int(np.argmax(mean_heatmap)), mean_heatmap.shape)
    h, w = mean_heatmap.shape
    zone = {LABEL_BACKGROUND: "background", LABEL_SKULL: "skull", LABEL_BRAIN: "brain"}[int(region_map[y, x])]
    return {"y": int(y), "x": int(x), "y_frac": (y + 0.5) / h, "x_frac": (x + 0.5) / w,
            "value": float(mean_heatmap[y, x]), "zone": zone}


def attention_atlas(heatmaps, images, region_maps, tumors, truth, pred, classes: list[str]) -> tuple[dict, dict]:
    """(summary, maps): per true class and per predicted class, n, energy by zone and the hot spot;
    maps[group][class] holds the mean arrays for the figure (not JSON)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    e = energies(heatmaps, region_maps, tumors)
    summary: dict = {"zones": list(ZONES), "by_true_class": {}, "by_predicted_class": {}}
    maps: dict = {"by_true_class": {}, "by_predicted_class": {}}
    for group, labels in (("by_true_class", truth), ("by_predicted_class", pred)):
        for c, name in enumerate(classes):
            idx = np.flatnonzero(labels == c)
            if not len(idx):
                continue
            m = mean_maps([heatmaps[i] for i in idx], [images[i] for i in idx], [region_maps[i] for i in idx])
            maps[group][name] = m
            row = {"n": int(len(idx)), "energy": mean_energy(e[idx]), "hot_spot": hot_spot(m["heatmap"], m["region_map"])}
            if group == "by_predicted_class":
                row["classes"] = {classes[k]: int(np.sum(truth[idx] == k)) for k in range(len(classes))
                                  if np.sum(truth[idx] == k)}
            summary[group][name] = row
    return summary, maps
