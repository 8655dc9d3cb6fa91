"""`segment_dataset`: every slice of a dataset (or one image) -> a mask PNG and an overlay PNG;
Dice/IoU where expert masks exist; the false-positive rate on tumor-free slices."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from tumorlens.segment.model import Segmenter, load_segmenter
from tumorlens.segment.metrics import false_positive_rate, slice_rows, summarize
from tumorlens.data.sample import Sample, SampleSet

# Class names that mean "this slice has no tumor" (the Kaggle set's is "notumor").
TUMOR_FREE_LABELS = {"notumor", "no_tumor", "no tumor", "no", "healthy", "normal"}

PREDICTED_RGB = (255, 64, 64)  # red: the segmenter's outline
EXPERT_RGB = (0, 255, 0)  # green: the expert's, as in every other tumorlens overlay


def is_tumor_free(s: Sample) -> bool:
    """Known to hold no tumor: a tumor-free class, or an expert mask that is empty."""
    if s.label is not None and s.label.lower() in TUMOR_FREE_LABELS:
        return True
    return s.mask is not None and not s.mask.any()


def output_names(ds: SampleSet) -> list[str]:
    """One file-system-safe, unique name per slice, from its path under the dataset root."""
    root = Path(ds.root) if ds.root else None
    names, seen = [], set()
    for s in ds.samples:
        p = Path(s.path)
        try:
            rel = p.relative_to(root) if root is not None and root.is_dir() else Path(p.name)
        except ValueError:
            rel = Path(p.name)
        stem = "__".join(rel.with_suffix("").parts) or p.stem
        idx = s.meta.get("slice_index")
        if idx is not None:
            stem += f"_slice{idx}"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}_{k}"
        seen.add(name)
        names.append(name)
    return names


def overlay_rgb(image: np.ndarray, predicted: np.ndarray, expert: np.ndarray | None = None) -> np.ndarray:
    """The slice in gray with the predicted outline in red and the expert outline (if any) in green."""
    from tumorlens.explain.overlays import tumor_outline

    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    gray = ((img - lo) / (hi - lo) * 255).astype(np.uint8) if hi > lo else np.zeros(img.shape, np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if expert is not None and expert.any():
        tumor_outline(rgb, expert, color=EXPERT_RGB)
    if predicted.any():
        tumor_outline(rgb, predicted, color=PREDICTED_RGB)
    return rgb


def segment_dataset(
    data: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    batch_size: int = 32,
    overlays: bool = True,
    segmenter: Segmenter | None = None,
    progress: bool = True,
) -> dict:
    from tumorlens.data.sources import open_dataset

    seg = segmenter or load_segmenter(model)
    ds = open_dataset(data, allow_unlabeled=True, progress=progress)
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)
    names = output_names(ds)

    pred_rows, scored, free_preds = [], [], []
    for i in tqdm(range(0, len(ds), batch_size), desc="segmenting", unit="batch", disable=not progress):
        chunk = ds.samples[i : i + batch_size]
        masks = seg.predict([s.image for s in chunk], batch_size)
        for s, name, m in zip(chunk, names[i : i + batch_size], masks):
            cv2.imwrite(str(out / "masks" / f"{name}.png"), m.astype(np.uint8) * 255)
            if overlays:
                rgb = overlay_rgb(s.image, m, s.mask)
                cv2.imwrite(str(out / "overlays" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            pred_rows.append({"slice": name, "path": s.path, "class": s.label, "patient": s.patient_id,
                              "pred_area": round(float(m.mean()), 6), "has_tumor": bool(m.any())})
            if is_tumor_free(s):
                free_preds.append(m)
            elif s.mask is not None:
                scored.append((name, m, s.mask, s.label, s.patient_id))

    pd.DataFrame(pred_rows, columns=["slice", "path", "class", "patient", "pred_area", "has_tumor"]).to_csv(
        out / "predictions.csv", index=False
    )
    metrics: dict = {"data": str(Path(data)), "n_slices": len(ds), "segmenter": seg.summary(),
                     "skipped": [{"path": k.path, "reason": k.reason} for k in ds.skipped]}
    if scored:
        names_, preds, trues, labels, pids = map(list, zip(*scored))
        df = slice_rows(names_, preds, trues, labels, pids)
        df.to_csv(out / "dice.csv", index=False)
        metrics["expert_masks"] = True
        summary = summarize(df)
        summary["n_scored"] = summary.pop("n_slices")  # slices with a tumor in their expert mask
        metrics.update(summary)
    else:
        metrics.update({"expert_masks": False, "n_scored": 0, "dice_mean": None, "iou_mean": None, "by_class": {}, "by_patient": {}})
    metrics["tumor_free"] = false_positive_rate(free_preds)
    metrics["tumor_free"]["min_area"] = seg.min_area
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
