"""What the audit needs from the segmenter: predicted masks for slices without expert ones (and
which kind each figure rests on), and, where a slice is a figshare slice (same perceptual hash),
how well the predicted mask agrees with that slice's expert mask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tumorlens.segment.model import Segmenter
from tumorlens.segment.metrics import dice_iou
from tumorlens.data.sample import SampleSet

MASK_SOURCES = ("expert", "predicted", "none")


@dataclass
class MaskFill:
    mask_source: str  # "expert" (every slice had one), "predicted" (some or all came from the segmenter) or "none"
    n_expert: int
    n_predicted: int
    segmenter: dict | None  # Segmenter.summary(): its validated Dice, quoted beside every tumor figure

    def to_dict(self) -> dict:
        return {"mask_source": self.mask_source, "n_expert_masks": self.n_expert,
                "n_predicted_masks": self.n_predicted, "segmenter": self.segmenter}


def fill_predicted_masks(samples: SampleSet, segmenter: Segmenter | None, batch_size: int = 32) -> MaskFill:
    """Give every slice without an expert mask the segmenter's mask (in place; meta['mask_source']
    says which each slice has). Without a segmenter, slices keep what they have."""
    missing = [i for i, s in enumerate(samples.samples) if s.mask is None]
    n_expert = len(samples) - len(missing)
    for s in samples.samples:
        if s.mask is not None:
            s.meta.setdefault("mask_source", "expert")
    if not missing or segmenter is None:
        source = "expert" if n_expert else "none"
        return MaskFill(source, n_expert, 0, segmenter.summary() if segmenter is not None and n_expert == 0 else None)
    for start in range(0, len(missing), batch_size):
        idx = missing[start : start + batch_size]
        masks = segmenter.predict([samples.samples[i].image for i in idx], batch_size)
        for i, m in zip(idx, masks):
            samples.samples[i].mask = m
            samples.samples[i].meta["mask_source"] = "predicted"
    return MaskFill("predicted", n_expert, len(missing), segmenter.summary())


def figshare_agreement(
    samples: SampleSet,
    predicted: list[np.ndarray | None],
    figshare: SampleSet,
    hamming: int = 2,
    never_trained: set[str] | None = None,
) -> dict:
    """Dice of predicted masks against the expert masks of the same slices in figshare.

    A slice matches the figshare slice with the nearest perceptual hash, if that is within
    `hamming` bits (the leakage check's default twin distance); the expert mask is brought to the
    slice's size (nearest neighbour). `never_trained`: figshare patient ids the segmenter never
    saw (e.g. the held-out list); their agreement is reported apart, as the unbiased figure.
    """
    from tumorlens.data.checks import hash_samples, hamming_pairs

    ha, va = hash_samples(samples.samples, progress=False)
    hb, vb = hash_samples(figshare.samples, progress=False)
    ia, ib = np.flatnonzero(va), np.flatnonzero(vb)
    i, j, d = hamming_pairs(ha[ia], hb[ib], hamming)
    best: dict[int, tuple[int, int]] = {}
    for a, b, dist in zip(ia[i], ib[j], d):
        if a not in best or dist < best[a][1]:
            best[a] = (b, dist)
    rows = []
    for a, (b, _) in sorted(best.items()):
        pred, ref = predicted[a], figshare.samples[b].mask
        if pred is None or ref is None or not ref.any():
            continue
        ref = cv2.resize(ref.astype(np.uint8), pred.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
        pid = figshare.samples[b].patient_id
        rows.append((dice_iou(pred, ref)[0], pid in never_trained if never_trained is not None else False))
    out = {"hamming": hamming, "n_matched": len(rows),
           "dice_mean": round(float(np.mean([r[0] for r in rows])), 4) if rows else None}
    if never_trained is not None:
        unseen = [r[0] for r in rows if r[1]]
        out["n_matched_never_trained"] = len(unseen)
        out["dice_mean_never_trained"] = round(float(np.mean(unseen)), 4) if unseen else None
    return out
