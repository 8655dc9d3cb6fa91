"""Tumor counterfactuals: does the decision follow the tumor?

- tumor removed: the tumor (mask dilated by a few pixels, so its bright rim goes too) is
  inpainted with OpenCV's Navier-Stokes method; Delta-Drop = P(true class | original) -
  P(true class | tumor removed). A model that reads the tumor loses confidence: large Delta-Drop.
- tumor mirrored away (reported beside the verdict, not judged): the tumor replaced by the mirror
  image of the other hemisphere, the removal `tumorlens train --tumor-removal-p` trains with. A
  model trained on one removal can learn its artefact, so the verdict rests on the inpainting and
  a large gap between the two Delta-Drops says the model learned the training removal's look.
  Written here: no library replaces a masked region by its contralateral mirror.
- tumor only: everything outside the tumor is set to the image's background grey;
  Delta-Focus = P(true class | tumor only). A model that reads the tumor keeps confidence.

Every edit is made on the display image ([0, 1], model size) and then z-scored by the model's
recipe (see forward.py), so the edited image is what the model would have seen from a scan like it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from tumorlens.audit.forward import probabilities01
from tumorlens.models.checkpoint import TumorModel

DILATE_PX = 3
INPAINT_RADIUS = 5
# the mirror removal (what `tumorlens train --tumor-removal-p` trains with): soft edge of the pasted
# tissue (Gaussian sigma, pixels at model size), so there is no hard seam to learn
FEATHER_SIGMA = 2.0
SMOOTH_SIGMA = 8.0  # last resort for a midline tumor with no healthy patch: a smooth local mean


def background_value(image01: np.ndarray, background: np.ndarray | None) -> float:
    """The grey of the image's background (median outside the head; 0 when there is none)."""
    if background is None or not np.any(background):
        return 0.0
    return float(np.median(np.asarray(image01)[background]))


def remove_tumor(image01: np.ndarray, tumor: np.ndarray, dilate_px: int = DILATE_PX,
                 radius: float = INPAINT_RADIUS) -> np.ndarray:
    """The image with the tumor inpainted (Navier-Stokes); unchanged when the mask is empty."""
    img = np.asarray(image01, np.float32)
    mask = np.asarray(tumor, bool)
    if not mask.any():
        return img.copy()
    m8 = mask.astype(np.uint8)
    if dilate_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        m8 = cv2.dilate(m8, k)
    out = cv2.inpaint(img, m8, radius, cv2.INPAINT_NS)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def mirror_column(brain: np.ndarray) -> float:
    """The column the brain is mirrored about: the middle of its horizontal extent (the image's
    middle when there is no brain)."""
    cols = np.flatnonzero(np.asarray(brain, bool).any(axis=0))
    if cols.size == 0:
        return (brain.shape[1] - 1) / 2
    return (cols[0] + cols[-1]) / 2


def remove_by_mirror(image01: np.ndarray, tumor: np.ndarray, center_col: float, brain: np.ndarray | None = None,
                     dilate_px: int = DILATE_PX, rng: np.random.Generator | None = None) -> np.ndarray:
    """The image with the (dilated) tumor replaced by the contralateral tissue; unchanged when the
    mask is empty. Where the mirror is tumor too (a midline tumor, e.g. pituitary), the tissue
    comes from another place of the same brain that holds no tumor (`brain` needed), else from a
    smooth mean of the surroundings. `rng` draws that place (default: seeded, so a call repeats)."""
    img = np.asarray(image01, np.float32)
    m8 = np.asarray(tumor, bool).astype(np.uint8)
    if not m8.any():
        return img.copy()
    if dilate_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        m8 = cv2.dilate(m8, k)
    w = img.shape[1]
    src = np.clip(np.rint(2 * center_col - np.arange(w)), 0, w - 1).astype(int)
    fill, crossing = img[:, src].copy(), (m8 & m8[:, src]).astype(bool)
    if crossing.any():
        donor = _healthy_patch(img, m8.astype(bool), brain, rng if rng is not None else np.random.default_rng(0))
        if donor is not None:
            fill[crossing] = donor[crossing]
        else:
            fill[crossing] = _smooth_fill(img, m8.astype(bool))[crossing]
    alpha = cv2.GaussianBlur(m8.astype(np.float32), (0, 0), FEATHER_SIGMA)
    alpha = np.maximum(alpha, m8)  # the tumor itself is fully replaced; only the rim blends
    blended = np.clip(alpha * fill + (1 - alpha) * img, 0.0, 1.0)
    return np.where(alpha > 1e-3, blended, img).astype(np.float32)  # beyond the rim: untouched pixels


def _smooth_fill(img: np.ndarray, region: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """The image's surroundings averaged into `region` (normalised convolution: a Gaussian mean of
    the pixels outside the region only)."""
    keep = (~region).astype(np.float32)
    num = cv2.GaussianBlur(img * keep, (0, 0), sigma)
    den = cv2.GaussianBlur(keep, (0, 0), sigma)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), img).astype(np.float32)


def _healthy_patch(img: np.ndarray, region: np.ndarray, brain: np.ndarray | None, rng: np.random.Generator,
                   tries: int = 30) -> np.ndarray | None:
    """The image shifted so that `region` is covered by brain tissue from elsewhere in the slice
    (inside the brain, away from the region itself), or None when no such shift is found."""
    if brain is None or not brain.any():
        return None
    ys, xs = np.nonzero(brain)
    ry, rx = np.nonzero(region)
    for _ in range(tries):
        j = rng.integers(len(ys))
        dy, dx = int(ys[j] - ry.mean()), int(xs[j] - rx.mean())
        sy, sx = ry + dy, rx + dx
        inside = (sy >= 0) & (sy < img.shape[0]) & (sx >= 0) & (sx < img.shape[1])
        if not inside.all() or not brain[sy, sx].all() or region[sy, sx].any():
            continue
        out = np.zeros_like(img)
        out[ry, rx] = img[sy, sx]
        return out
    return None


def keep_only(image01: np.ndarray, keep: np.ndarray, fill: float) -> np.ndarray:
    """The image with every pixel outside `keep` set to `fill`."""
    out = np.array(image01, np.float32, copy=True)
    out[~np.asarray(keep, bool)] = fill
    return out


def tumor_only(image01: np.ndarray, tumor: np.ndarray, fill: float) -> np.ndarray:
    return keep_only(image01, tumor, fill)


def counterfactual_table(
    model: TumorModel,
    images01: np.ndarray,
    tumors: np.ndarray,
    truth: np.ndarray,
    p_original: np.ndarray,
    backgrounds: np.ndarray | None = None,
    batch_size: int = 64,
    brains: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per image: P(true) original / tumor removed (inpainted, and mirrored away) / tumor only,
    Delta-Drop (both removals), Delta-Focus, and the predictions after each edit. Images without a
    tumor get NaN (nothing to remove).

    images01 (N,S,S) display images; tumors (N,S,S) bool; truth (N,) class indices;
    p_original (N,C) probabilities already computed for the unedited images;
    backgrounds (N,S,S) bool background masks (for the fill grey), optional;
    brains (N,S,S) bool brain masks (the mirror's midline and its healthy tissue), optional.
    """
    n = len(images01)
    has = np.array([np.asarray(t).any() for t in tumors], bool) if n else np.zeros(0, bool)
    idx = np.flatnonzero(has)
    rng = np.random.default_rng(0)  # the mirror's patch for midline tumors: the same on every run
    brain_of = (lambda i: brains[i]) if brains is not None else (lambda i: np.zeros(images01[i].shape, bool))
    edits = {
        "removed": [remove_tumor(images01[i], tumors[i]) for i in idx],
        "removed_mirror": [remove_by_mirror(images01[i], tumors[i], mirror_column(brain_of(i)), brain_of(i), rng=rng)
                           for i in idx],
        "tumor_only": [tumor_only(images01[i], tumors[i],
                                  background_value(images01[i], None if backgrounds is None else backgrounds[i]))
                       for i in idx],
    }
    c = p_original.shape[1]
    cols = {"p_true_original": p_original[np.arange(n), truth], "pred_original": p_original.argmax(1)}
    for name, edited in edits.items():
        p = probabilities01(model, np.stack(edited), batch_size) if len(idx) else np.zeros((0, c))
        cols[f"p_true_{name}"], cols[f"pred_{name}"] = np.full(n, np.nan), np.full(n, -1)
        if len(idx):
            cols[f"p_true_{name}"][idx] = p[np.arange(len(idx)), truth[idx]]
            cols[f"pred_{name}"][idx] = p.argmax(1)
    df = pd.DataFrame(cols)
    df["delta_drop"] = df["p_true_original"] - df["p_true_removed"]
    df["delta_drop_mirror"] = df["p_true_original"] - df["p_true_removed_mirror"]
    df["delta_focus"] = df["p_true_tumor_only"]
    df.loc[~has, "p_true_original"] = np.nan  # only meaningful beside its counterfactuals
    return df


def summarise_counterfactuals(df: pd.DataFrame, truth: np.ndarray, classes: list[str], correct: np.ndarray) -> dict:
    """Mean Delta-Drop / Delta-Focus (and how often the prediction changes when the tumor is
    removed) per class and for correct vs misclassified cases; only images with a tumor count."""
    truth = np.asarray(truth)
    d = df.assign(cls=[classes[t] for t in truth], correct=np.asarray(correct, bool),
                  changed=(df["pred_removed"].to_numpy() != df["pred_original"].to_numpy()))
    d = d[d["delta_drop"].notna()]

    def stats(part: pd.DataFrame) -> dict:
        if part.empty:
            return {"n": 0}
        return {
            "n": len(part),
            "delta_drop_mean": float(part["delta_drop"].mean()),
            "delta_drop_median": float(part["delta_drop"].median()),
            "delta_focus_mean": float(part["delta_focus"].mean()),
            "delta_focus_median": float(part["delta_focus"].median()),
            "delta_drop_mirror_mean": float(part["delta_drop_mirror"].mean()),
            "p_true_original_mean": float(part["p_true_original"].mean()),
            "share_prediction_changes_when_removed": float(part["changed"].mean()),
        }

    return {
        "all": stats(d),
        "by_class": {c: stats(g) for c, g in d.groupby("cls")},
        "correct": stats(d[d["correct"]]),
        "misclassified": stats(d[~d["correct"]]),
        "dilate_px": DILATE_PX,
        "inpaint": f"cv2.INPAINT_NS radius {INPAINT_RADIUS}",
        "mirror": "contralateral mirror (the removal `train --tumor-removal-p` uses), reported, not judged",
    }
