"""Can the head_rank recipe's head mask be made unmoved by monotone intensity changes? (issues 18, 27)

head_rank ranks the pixels inside the audit's head mask (half-Otsu threshold, anatomy/regions.py);
the ranks cannot move under a monotone change, the mask can (gamma 1.6 moved the display image
by 0.047 on average). Candidate masks, each followed by head_rank's ranking, on every 50th Kaggle
Training slice: mean absolute change of the display image under gamma 0.6 / 1.6 / brightness
down, and the mask's IoU with the audit's head mask on the clean slice.
- "audit": the audit's head mask (what head_rank uses);
- "equalised": the audit's mask rule on the rank-equalised image (exactly invariant under any
  strictly increasing change);
- "log-otsu f": Otsu on the log image, threshold at f of the way from its 1st percentile to the
  Otsu level (affine-equivariant rules in log space are gamma-equivariant, apart from the +1/255);
- "otsu xf" (issue 27, lever 4): the audit's rule at f x the Otsu level instead of 0.5 x, so the
  threshold sits above the dark fifth that "brightness down" saturates;
- "hull" (issue 27, lever 4; the "hull_rank" recipe): the convex hull of the audit rule's bright
  parts (anatomy/regions.py head_hull);
- "clean mask (floor)": the shifted slice ranked in the clean slice's audit mask, i.e. no mask
  change at all: what the saturated pixels' ties alone move, which no mask rule can undo.
Each shift also reports the mask's IoU with itself on the clean slice (mean / min).

Run: .venv/bin/python benchmarks/experiments/head_mask_invariance.py [--every 50] [--offset 0]
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

from tumorlens.anatomy.regions import _fill_holes, _odd, head_hull, head_mask  # noqa: E402
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
         "log-otsu 0.7": lambda im: log_otsu(im, 0.7), "log-otsu 0.9": lambda im: log_otsu(im, 0.9),
         # issue 27 lever 4: a threshold above the dark fifth that "brightness down" blacks out
         "otsu x0.75": lambda im: head_mask(im, 0.75), "otsu x1.0": lambda im: head_mask(im, 1.0),
         "hull": head_hull}
# Shifted image ranked in the clean image's audit mask: what ties alone move, with no mask change
# (the floor any mask rule can reach; pixels the window saturates lose their order for good).
CLEAN_MASK = "clean mask (floor)"


def ious(masks, others):
    return np.array([(m & o).sum() / max((m | o).sum(), 1) for m, o in zip(masks, others)])


def ranked(img, head):
    head = head if head.any() else np.ones(img.shape, bool)
    out = np.zeros(img.shape, np.float32)
    out[head] = rankdata(img[head], method="average") / head.sum()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--offset", type=int, default=0, help="first slice; another offset gives slices the choice never saw")
    args = ap.parse_args()
    raw = [s.image for s in open_dataset(str(KAGGLE)).by_split("Training").samples[args.offset :: args.every]]
    recipe = PreprocessRecipe(size=224, clip_low=0, clip_high=100)
    acquired = np.stack([recipe.acquired(im) for im in raw])
    audit_heads = [head_mask(a) for a in acquired]
    print(f"{len(raw)} slices; mean |display change| (95th percentile) per shift; IoU with the audit's head mask")
    shifts = ("gamma 0.6", "gamma 1.6", "contrast up", "brightness up", "brightness down", "bias field")
    moved = {s: renormalize01(recipe, shift_by_name(s)(acquired)) for s in shifts}
    for name, mask in {**MASKS, CLEAN_MASK: None}.items():
        heads = audit_heads if mask is None else [mask(a) for a in acquired]
        iou = ious(heads, audit_heads)
        base = np.stack([ranked(a, m) for a, m in zip(acquired, heads)])
        line = f"{name:18s} IoU mean {iou.mean():.3f} min {iou.min():.3f}"
        for shift in shifts:
            moved_heads = heads if mask is None else [mask(m) for m in moved[shift]]
            after = [ranked(m, h) for m, h in zip(moved[shift], moved_heads)]
            d = np.abs(np.stack(after) - base).mean(axis=(1, 2))
            mask_iou = ious(moved_heads, heads)
            line += f"\n    {shift:16s} {d.mean():.4f} ({np.quantile(d, 0.95):.4f}) mask IoU {mask_iou.mean():.3f}/{mask_iou.min():.3f}"
        print(line)


if __name__ == "__main__":
    main()
