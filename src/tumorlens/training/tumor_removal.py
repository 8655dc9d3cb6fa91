"""Tumor-removed counterfactual examples for training: with probability p, a tumor slice's tumor is
removed and the slice is relabelled as the tumor-free class, so the model learns that without the
tumor there is no tumor class to call (the audit's counterfactual check asks exactly that).

The removal here is deliberately NOT the audit's (tumorlens.audit.counterfactuals inpaints with
OpenCV's Navier-Stokes method): a model trained on one removal method can learn that method's
artefact instead of the tumor's absence, so the audit must measure with another one. Here the
tumor is replaced by the mirror image of the other hemisphere (pseudo-healthy tissue, the brain
being near-symmetric about its midline), blended in with a soft edge; where the mirrored region is
tumor too (a tumor across the midline), tissue from another tumor-free place of the same brain
fills it (or, failing that, a smooth mean of the surroundings). Written here: no
library replaces a masked region by its contralateral mirror.

Masks: the expert's where a slice has one (figshare), otherwise the bundled segmenter's
(tumorlens.segment), brought to model size. Works on display images ([0, 1], after the recipe's
standardisation), where the audit edits pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError
from tumorlens.segment.run import TUMOR_FREE_LABELS

# soft edge of the pasted tissue (Gaussian sigma, pixels at model size): no hard seam to learn
FEATHER_SIGMA = 2.0
SMOOTH_SIGMA = 8.0  # last resort for a midline tumor with no healthy patch: a smooth local mean
# wider than the audit's 3 px (tumorlens.audit.counterfactuals.DILATE_PX): the segmenter's masks
# often stop short of the tumor's rim and oedema, and a tumor left half in place would be a slice
# labelled tumor-free that still shows a tumor
TRAIN_DILATE_PX = 6


def tumor_free_class(classes: list[str]) -> int:
    """Index of the tumor-free class a tumor-removed slice is relabelled as."""
    for k, name in enumerate(classes):
        if name.lower() in TUMOR_FREE_LABELS:
            return k
    raise TumorlensError(
        f"--tumor-removal-p needs a tumor-free class to relabel removed tumors as; classes are {classes} "
        f"(recognised names: {', '.join(sorted(TUMOR_FREE_LABELS))})"
    )


def mirror_column(brain: np.ndarray) -> float:
    """The column the brain is mirrored about: the middle of its horizontal extent (the image's
    middle when there is no brain)."""
    cols = np.flatnonzero(np.asarray(brain, bool).any(axis=0))
    if cols.size == 0:
        return (brain.shape[1] - 1) / 2
    return (cols[0] + cols[-1]) / 2


def remove_by_mirror(image01: np.ndarray, tumor: np.ndarray, center_col: float, brain: np.ndarray | None = None,
                     dilate_px: int = TRAIN_DILATE_PX, rng: np.random.Generator | None = None) -> np.ndarray:
    """The image with the (dilated) tumor replaced by the contralateral tissue; unchanged when the
    mask is empty. Where the mirror is tumor too (a midline tumor, e.g. pituitary), the tissue
    comes from another place of the same brain that holds no tumor (`brain` needed), else from a
    smooth mean of the surroundings."""
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
        donor = _healthy_patch(img, m8.astype(bool), brain, rng or np.random.default_rng())
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


class TumorRemoval:
    """Per drawn training image: with probability p, a tumor slice with a non-empty mask comes back
    tumor-removed and labelled `target`."""

    def __init__(self, masks: np.ndarray, brains: np.ndarray, target: int, p: float, rng: np.random.Generator):
        if not 0 <= p <= 1:
            raise TumorlensError(f"--tumor-removal-p must lie in [0, 1], got {p}")
        self.masks, self.brains, self.target, self.p, self.rng = masks, brains, int(target), float(p), rng

    def __call__(self, image01: np.ndarray, i: int, label: int) -> tuple[np.ndarray, int]:
        mask = self.masks[i]
        if label == self.target or not mask.any() or self.rng.random() >= self.p:
            return image01, label
        brain = self.brains[i]
        return remove_by_mirror(image01, mask, mirror_column(brain), brain, rng=self.rng), self.target


def training_tumor_masks(samples: SampleSet, recipe: PreprocessRecipe, labels: np.ndarray, target: int,
                         segmenter=None, batch_size: int = 32) -> tuple[np.ndarray, dict]:
    """(N, S, S) bool tumor masks at model size for the tumor slices (tumor-free slices: empty), and
    how many came from experts and from the segmenter. `segmenter`: a tumorlens.segment Segmenter,
    or None for the bundled one (loaded only if some tumor slice lacks an expert mask)."""
    n, s = len(samples), recipe.size
    masks = np.zeros((n, s, s), bool)
    need = [i for i in range(n) if labels[i] != target]
    counts = {"expert": 0, "predicted": 0}
    pending: list[int] = []

    def flush():
        nonlocal segmenter
        if not pending:
            return
        if segmenter is None:
            from tumorlens.segment.model import load_segmenter

            segmenter = load_segmenter()
        images = [samples.samples[i].image for i in pending]
        for i, image, m in zip(pending, images, segmenter.predict(images, batch_size)):
            masks[i] = recipe.mask(m, image)
        counts["predicted"] += len(pending)
        pending.clear()

    for i in tqdm(need, desc="tumor masks for removal", unit="img", leave=False):
        smp = samples.samples[i]
        if smp.mask is not None:
            masks[i] = recipe.mask(smp.mask, smp.image)
            counts["expert"] += 1
        else:
            pending.append(i)
            if len(pending) == batch_size:
                flush()
    flush()
    counts["with_tumor"] = int(masks[need].any(axis=(1, 2)).sum()) if need else 0
    return masks, counts
