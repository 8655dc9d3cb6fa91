"""Tumor counterfactuals: does the decision follow the tumor?

- tumor removed: the tumor (mask dilated by a few pixels, so its bright rim goes too) is
  inpainted with OpenCV's Navier-Stokes method; Delta-Drop = P(true class | original) -
  P(true class | tumor removed). A model that reads the tumor loses confidence: large Delta-Drop.
- tumor only: everything outside the tumor is set to the image's background grey;
  Delta-Focus = P(true class | tumor only). A model that reads the tumor keeps confidence.

Both edits are made on the display image ([0, 1], model size) and then z-scored by the model's
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
) -> pd.DataFrame:
    """Per image: P(true) original / tumor removed / tumor only, Delta-Drop, Delta-Focus, and the
    predictions after each edit. Images without a tumor get NaN (nothing to remove).

    images01 (N,S,S) display images; tumors (N,S,S) bool; truth (N,) class indices;
    p_original (N,C) probabilities already computed for the unedited images;
    backgrounds (N,S,S) bool background masks (for the fill grey), optional.
    """
    n = len(images01)
    has = np.array([np.asarray(t).any() for t in tumors], bool) if n else np.zeros(0, bool)
    idx = np.flatnonzero(has)
    removed = [remove_tumor(images01[i], tumors[i]) for i in idx]
    only = [tumor_only(images01[i], tumors[i],
                       background_value(images01[i], None if backgrounds is None else backgrounds[i])) for i in idx]
    c = p_original.shape[1]
    p_rem = probabilities01(model, np.stack(removed), batch_size) if len(idx) else np.zeros((0, c))
    p_only = probabilities01(model, np.stack(only), batch_size) if len(idx) else np.zeros((0, c))

    nan = np.full(n, np.nan)
    p_true = p_original[np.arange(n), truth]
    cols = {"p_true_original": p_true, "p_true_removed": nan.copy(), "p_true_tumor_only": nan.copy(),
            "pred_original": p_original.argmax(1), "pred_removed": np.full(n, -1), "pred_tumor_only": np.full(n, -1)}
    if len(idx):
        cols["p_true_removed"][idx] = p_rem[np.arange(len(idx)), truth[idx]]
        cols["p_true_tumor_only"][idx] = p_only[np.arange(len(idx)), truth[idx]]
        cols["pred_removed"][idx] = p_rem.argmax(1)
        cols["pred_tumor_only"][idx] = p_only.argmax(1)
    df = pd.DataFrame(cols)
    df["delta_drop"] = df["p_true_original"] - df["p_true_removed"]
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
    }
