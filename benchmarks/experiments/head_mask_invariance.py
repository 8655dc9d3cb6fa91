"""Can the head_rank recipe's head mask be made unmoved by monotone intensity changes? (issue 18)

head_rank ranks the pixels inside the audit's head mask (half-Otsu threshold, anatomy/regions.py);
the ranks cannot move under a monotone change, the mask can (gamma 1.6 moved the display image
by 0.047 on average). Candidate masks, each followed by head_rank's ranking, on every 50th Kaggle
Training slice: mean absolute change of the display image under gamma 0.6 / 1.6 / brightness
down, and the mask's IoU with the audit's head mask on the clean slice.
- "audit": the audit's head mask (what head_rank uses);
- "equalised": the audit's mask rule on the rank-equalised image (exactly invariant under any
  strictly increasing change);
- "log-otsu f": Otsu on the log image, threshold at f of the way from its 1st percentile to the
  Otsu level (affine-equivariant rules in log space are gamma-equivariant, apart from the +1/255).

Run: .venv/bin/python benchmarks/experiments/head_mask_invariance.py [--every 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata
from skimage.filters import threshold_otsu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results import KAGGLE  # noqa: E402

from tumorlens.anatomy.regions import _fill_holes, _odd, head_mask  # noqa: E402
from tumorlens.data.preprocess import PreprocessRecipe  # noqa: E402
from tumorlens.data.sources import open_dataset  # noqa: E402
from tumorlens.shifts import renormalize01, shift_by_name  # noqa: E402


def equalised(img):
    return (rankdata(img.ravel(), method="average") / img.size).reshape(img.shape).astype(np.float32)


def largest_filled(binary, side):
    k = _odd(side / 40)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    binary = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    n, lab, st, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return np.zeros(binary.shape, bool)
    head = lab == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
    return _fill_holes(cv2.morphologyEx(head.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool))


def log_otsu(img, f):
    sm = cv2.GaussianBlur(np.log(np.clip(img, 0, 1) + 1 / 255).astype(np.float32), (0, 0), max(1.0, min(img.shape) / 160))
    lo, t = np.quantile(sm, 0.01), threshold_otsu(sm)
    return largest_filled(sm > lo + f * (t - lo), min(img.shape))


MASKS = {"audit": head_mask, "equalised": lambda im: head_mask(equalised(im)),
         "log-otsu 0.7": lambda im: log_otsu(im, 0.7), "log-otsu 0.9": lambda im: log_otsu(im, 0.9)}


def ranked(img, head):
    head = head if head.any() else np.ones(img.shape, bool)
    out = np.zeros(img.shape, np.float32)
    out[head] = rankdata(img[head], method="average") / head.sum()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=50)
    args = ap.parse_args()
    raw = [s.image for s in open_dataset(str(KAGGLE)).by_split("Training").samples[:: args.every]]
    recipe = PreprocessRecipe(size=224, clip_low=0, clip_high=100)
    acquired = np.stack([recipe.acquired(im) for im in raw])
    audit_heads = [head_mask(a) for a in acquired]
    print(f"{len(raw)} slices; mean |display change| (95th percentile) per shift; IoU with the audit's head mask")
    for name, mask in MASKS.items():
        heads = [mask(a) for a in acquired]
        iou = np.array([(m & h).sum() / max((m | h).sum(), 1) for m, h in zip(heads, audit_heads)])
        base = np.stack([ranked(a, m) for a, m in zip(acquired, heads)])
        line = f"{name:13s} IoU mean {iou.mean():.3f} min {iou.min():.3f}"
        for shift in ("gamma 0.6", "gamma 1.6", "brightness down"):
            moved = renormalize01(recipe, shift_by_name(shift)(acquired))
            d = np.abs(np.stack([ranked(m, mask(m)) for m in moved]) - base).mean(axis=(1, 2))
            line += f" | {shift} {d.mean():.4f} ({np.quantile(d, 0.95):.4f})"
        print(line)


if __name__ == "__main__":
    main()
