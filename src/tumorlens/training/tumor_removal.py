"""Tumor-removed counterfactual examples for training: with probability p, a tumor slice's tumor is
removed and the slice is relabelled as the tumor-free class, so the model learns that without the
tumor there is no tumor class to call (the audit's counterfactual check asks exactly that).

The removal here is deliberately NOT the one the audit's verdict rests on (Navier-Stokes
inpainting): a model trained on one removal method can learn that method's artefact instead of the
tumor's absence, so the audit must measure with another one. Here the tumor is replaced by the
mirror image of the other hemisphere (tumorlens.audit.counterfactuals.remove_by_mirror, which the
audit reports too, beside its verdict).

Masks: the expert's where a slice has one (figshare), otherwise the bundled segmenter's
(tumorlens.segment), brought to model size. Works on display images ([0, 1], after the recipe's
standardisation), where the audit edits pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from tumorlens.audit.counterfactuals import mirror_column, remove_by_mirror
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError
from tumorlens.models.registry import final_linear
from tumorlens.segment.run import TUMOR_FREE_LABELS

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


def check_removal_p(p: float) -> float:
    if not 0 <= p <= 1:
        raise TumorlensError(f"--tumor-removal-p must lie in [0, 1], got {p}")
    return float(p)


def removal_label_shift(counts: np.ndarray, removable: np.ndarray, target: int, p: float) -> np.ndarray:
    """Per-class logit correction for the label shift that relabelling causes: log prior(data) -
    log prior(training). Relabelling a share p of the removable tumor slices inflates the tumor-free
    class during training, so the trained model over-calls it by exactly that prior ratio (a logit
    adjustment, Menon et al. 2021). `counts`: training slices per class; `removable`: those with a
    non-empty tumor mask."""
    counts, removable = np.asarray(counts, float), np.asarray(removable, float)
    moved = p * removable
    moved[target] = 0.0
    seen = counts - moved
    seen[target] += moved.sum()
    with np.errstate(divide="ignore", invalid="ignore"):  # a class absent from training: nothing to undo
        shift = np.log(counts) - np.log(seen)  # both sum to the same N, so the totals cancel
    return np.where(counts > 0, shift, 0.0)


def undo_removal_label_shift(net, arch: str, classes: list[str], counts, removable, p: float) -> list[float]:
    """Fold removal_label_shift into the classifier's bias, so every command that loads the trained
    network predicts with the data's class priors, not training's. Returns the correction."""
    shift = removal_label_shift(counts, removable, tumor_free_class(classes), p)
    layer = final_linear(net, arch)
    with torch.no_grad():
        layer.bias += torch.as_tensor(shift, dtype=layer.bias.dtype)
    return [round(float(v), 6) for v in shift]


class TumorRemoval:
    """Per drawn training image: with probability p, a tumor slice with a non-empty mask comes back
    tumor-removed and labelled `target`."""

    def __init__(self, masks: np.ndarray, brains: np.ndarray, target: int, p: float, rng: np.random.Generator):
        self.masks, self.brains, self.target, self.p, self.rng = masks, brains, int(target), check_removal_p(p), rng

    def __call__(self, image01: np.ndarray, i: int, label: int) -> tuple[np.ndarray, int]:
        mask = self.masks[i]
        if label == self.target or not mask.any() or self.rng.random() >= self.p:
            return image01, label
        brain = self.brains[i]
        return remove_by_mirror(image01, mask, mirror_column(brain), brain, TRAIN_DILATE_PX, self.rng), self.target


def training_tumor_masks(samples: SampleSet, recipe: PreprocessRecipe, labels: np.ndarray, target: int,
                         segmenter=None, batch_size: int = 32) -> tuple[np.ndarray, dict]:
    """(N, S, S) bool tumor masks at model size for the tumor slices (tumor-free slices: empty), and
    how many came from experts and from the segmenter, and how many per class are non-empty.
    `segmenter`: a tumorlens.segment Segmenter, or None for the bundled one (loaded only if some tumor
    slice lacks an expert mask)."""
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
    found = masks.any(axis=(1, 2))
    counts["with_tumor"] = int(found.sum())
    # per class: the share of each class that relabelling can move, for removal_label_shift
    counts["with_tumor_by_class"] = np.bincount(labels[found], minlength=len(samples.classes)).tolist()
    return masks, counts
