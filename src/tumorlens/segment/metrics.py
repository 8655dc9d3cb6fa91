"""Dice and IoU of predicted against expert masks: per slice, per class, per patient; and the
false-positive rate on tumor-free slices."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd


def dice_iou(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two bool masks; both empty counts as perfect agreement (1, 1)."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {true.shape}")
    inter = np.logical_and(pred, true).sum()
    total = pred.sum() + true.sum()
    if total == 0:
        return 1.0, 1.0
    return float(2 * inter / total), float(inter / (total - inter))


def slice_rows(names, preds, trues, labels=None, patients=None) -> pd.DataFrame:
    """One row per slice with an expert mask: name, class, patient, dice, iou, areas."""
    rows = []
    n = len(names)
    labels = labels if labels is not None else [None] * n
    patients = patients if patients is not None else [None] * n
    for name, p, t, lab, pid in zip(names, preds, trues, labels, patients):
        d, j = dice_iou(p, t)
        rows.append({
            "slice": name, "class": lab, "patient": pid, "dice": d, "iou": j,
            "true_area": float(np.mean(t)), "pred_area": float(np.mean(p)),
        })
    return pd.DataFrame(rows, columns=["slice", "class", "patient", "dice", "iou", "true_area", "pred_area"])


def summarize(df: pd.DataFrame) -> dict:
    """dice_mean / iou_mean over slices, by class, and per patient (mean of each patient's slices;
    patient_dice_mean weighs every patient once)."""
    if df.empty:
        return {"n_slices": 0, "dice_mean": None, "iou_mean": None, "by_class": {}, "by_patient": {}}
    out = {
        "n_slices": int(len(df)),
        "dice_mean": round(float(df["dice"].mean()), 4),
        "dice_median": round(float(df["dice"].median()), 4),
        "iou_mean": round(float(df["iou"].mean()), 4),
        "by_class": {
            str(c): {"n": int(len(g)), "dice_mean": round(float(g["dice"].mean()), 4), "iou_mean": round(float(g["iou"].mean()), 4)}
            for c, g in df.groupby(df["class"].fillna("unknown"))
        },
    }
    if df["patient"].notna().any():
        per = df.dropna(subset=["patient"]).groupby("patient")
        out["n_patients"] = int(per.ngroups)
        out["patient_dice_mean"] = round(float(per["dice"].mean().mean()), 4)
        out["by_patient"] = {
            str(p): {"n": int(len(g)), "dice_mean": round(float(g["dice"].mean()), 4)} for p, g in per
        }
    else:
        out["by_patient"] = {}
    return out


def false_positive_rate(preds: Iterable[np.ndarray]) -> dict:
    """Share of tumor-free slices on which any tumor is predicted (masks already cleaned of
    components below the segmenter's min_area)."""
    flags = [bool(np.asarray(p).any()) for p in preds]
    return {"n_slices": len(flags), "with_predicted_tumor": int(sum(flags)),
            "false_positive_rate": round(float(np.mean(flags)), 4) if flags else None}
