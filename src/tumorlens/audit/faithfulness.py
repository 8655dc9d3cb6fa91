"""Deletion and insertion curves (Petsiuk et al., RISE, 2018): is the heatmap faithful to the model?

Deletion: pixels are removed from the display image in order of decreasing heatmap value
(replaced by the background grey) and the probability of the explained class is recorded; a
faithful map makes it fall fast (low area under the curve). Insertion: pixels are put back, in
the same order, onto a blurred copy of the image; a faithful map makes it rise fast (high area).

Hand-written because neither Captum nor pytorch-grad-cam ships these two curves for arbitrary
heatmaps; every perturbed copy of a batch goes through the model in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from tumorlens.audit.forward import probabilities01
from tumorlens.models.checkpoint import TumorModel

N_STEPS = 10  # curve points at 0, 1/10, ..., 1 of the pixels
# perturbed copies built at once (13 MB at 224 px), whatever the pass size: whole images' curves
# per group, cut into passes of batch_size
STACK_IMAGES = 64
BLUR_SIGMA_FRACTION = 0.05  # insertion canvas: Gaussian blur with sigma = 5 % of the image side


@dataclass
class Curves:
    fractions: np.ndarray  # (K,) share of pixels removed / inserted
    deletion: np.ndarray  # (N, K) probability of the explained class
    insertion: np.ndarray  # (N, K)

    @property
    def deletion_auc(self) -> np.ndarray:
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        return np.trapezoid(self.insertion, self.fractions, axis=1)


def pixel_order(heatmap: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices from most to least important; ties (flat CAM plateaus) broken at random."""
    h = np.asarray(heatmap, np.float64).ravel()
    jitter = np.random.default_rng(seed).random(h.size) * 1e-9
    return np.argsort(-(h + jitter), kind="stable")


def _perturbed(start: np.ndarray, finish: np.ndarray, order: np.ndarray, n_steps: int) -> np.ndarray:
    """n_steps+1 images: from `start`, the first k/n_steps of `order` pixels taken from `finish`."""
    flat_s, flat_f = start.ravel(), finish.ravel()
    counts = np.round(np.linspace(0, flat_s.size, n_steps + 1)).astype(int)
    out = np.empty((n_steps + 1, flat_s.size), np.float32)
    for j, k in enumerate(counts):
        row = flat_s.copy()
        row[order[:k]] = flat_f[order[:k]]
        out[j] = row
    return out.reshape(n_steps + 1, *start.shape)


def deletion_insertion(
    model: TumorModel,
    images01: np.ndarray,
    heatmaps: np.ndarray,
    targets: np.ndarray,
    fills: np.ndarray | None = None,
    n_steps: int = N_STEPS,
    batch_size: int = 64,
    progress=None,
    endpoints: np.ndarray | None = None,
) -> Curves:
    """Curves for N images (display space, (N,S,S)) explained by heatmaps (N,S,S) for `targets`.

    fills: (N,) grey for deleted pixels (the background grey); 0 if omitted.
    endpoints: optional (N, 3) P(target) of the original, the all-deleted and the blurred image,
    which no heatmap changes (see curve_endpoints); passing them spares 4 passes per image when
    several explainers are compared on the same images.
    progress: optional callable(n_done) for a progress bar.
    """
    images01 = np.asarray(images01, np.float32)
    n = len(images01)
    fracs = np.linspace(0, 1, n_steps + 1)
    dele = np.zeros((n, n_steps + 1), np.float32)
    ins = np.zeros((n, n_steps + 1), np.float32)
    fills = np.zeros(n, np.float32) if fills is None else np.asarray(fills, np.float32)
    if endpoints is None:
        endpoints = curve_endpoints(model, images01, targets, fills, batch_size)
    inner = n_steps - 1  # the heatmap only decides the steps strictly between the endpoints
    per_batch = max(1, max(batch_size, STACK_IMAGES) // max(2 * inner, 1))
    for start in range(0, n, per_batch):
        idx = range(start, min(n, start + per_batch))
        stacks = []
        for i in idx:
            img = images01[i]
            order = pixel_order(heatmaps[i], seed=i)
            stacks.append(_perturbed(img, np.full_like(img, fills[i]), order, n_steps)[1:-1])
            stacks.append(_perturbed(_blurred(img), img, order, n_steps)[1:-1])
        if inner > 0:
            probs = probabilities01(model, np.concatenate(stacks), batch_size=batch_size)
            probs = probs.reshape(len(idx), 2, inner, -1)
        for j, i in enumerate(idx):
            original, deleted, blurred = endpoints[i]
            dele[i, 0], dele[i, -1] = original, deleted
            ins[i, 0], ins[i, -1] = blurred, original
            if inner > 0:
                dele[i, 1:-1] = probs[j, 0, :, targets[i]]
                ins[i, 1:-1] = probs[j, 1, :, targets[i]]
        if progress is not None:
            progress(len(idx))
    return Curves(fracs, dele, ins)


def _blurred(img: np.ndarray) -> np.ndarray:
    sigma = max(1.0, BLUR_SIGMA_FRACTION * img.shape[0])
    return cv2.GaussianBlur(img, (0, 0), sigma)


def curve_endpoints(model: TumorModel, images01: np.ndarray, targets: np.ndarray, fills: np.ndarray,
                    batch_size: int = 64) -> np.ndarray:
    """(N, 3) P(target) of each original image, of it with every pixel deleted, and of its blurred
    copy: the curves' fixed ends, the same for every explainer."""
    images01 = np.asarray(images01, np.float32)
    n = len(images01)
    stack = np.concatenate([images01, np.broadcast_to(np.asarray(fills, np.float32)[:, None, None], images01.shape),
                            np.stack([_blurred(im) for im in images01])])
    p = probabilities01(model, stack, batch_size).reshape(3, n, -1)
    t = np.asarray(targets)
    return np.stack([p[k, np.arange(n), t] for k in range(3)], axis=1)


# -- ROAD (Rong et al., ICML 2022: "A Consistent and Efficient Evaluation Strategy for Attribution
#    Methods"): remove pixels by heatmap rank, but fill them by noisy linear imputation from their
#    neighbours instead of a constant, so the removal's shape does not leak the class. Computed with
#    pytorch-grad-cam's implementation (pytorch_grad_cam.metrics.road). -------------------------------
ROAD_PERCENTILES = (10, 30, 50, 70, 90)  # heatmap percentiles: remove the top (MoRF) / bottom (LeRF) 90 ... 10 %
AUDIT_ROAD_PERCENTILES = (50, 70, 90)  # the audit's explainer table: three levels, to keep its cost down


@dataclass
class Road:
    """Per image, the mean change of P(explained class) over the removal levels (negative: it fell).

    morf: most relevant pixels removed first; a faithful map makes it fall (lower is better).
    lerf: least relevant pixels removed first; a faithful map leaves it (near 0 is better).
    combined: (lerf - morf) / 2, pytorch-grad-cam's ROADCombined; higher is better."""

    percentiles: tuple[int, ...]
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        return (self.lerf - self.morf) / 2


class _DisplayInput(torch.nn.Module):
    """Display-space images (N, 1, S, S) -> temperature-scaled logits, so that the library's
    softmax target is the audit's calibrated probability and imputation happens where every other
    audit perturbation does (forward.py)."""

    def __init__(self, model: TumorModel):
        super().__init__()
        self.model = model

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(self.model.recipe.normalize(x01[:, 0].numpy().astype(np.float32))[:, None].copy())
        return self.model.net(x) / self.model.temperature


def road(model: TumorModel, images01: np.ndarray, heatmaps: np.ndarray, targets: np.ndarray,
         percentiles=ROAD_PERCENTILES, batch_size: int = 16, seed: int = 0, progress=None) -> Road:
    """ROAD for N images (display space, (N,S,S)) explained by heatmaps (N,S,S) for `targets`.

    Cost: 2 x len(percentiles) model passes and sparse linear solves per image; the solve grows
    with the number of removed pixels (about 0.5-2 s for half of a 224 px image on this machine),
    so keep N small (the explainer comparison's subset). seed: the imputer's noise (torch's global
    generator, restored afterwards). progress: optional callable(n_done)."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    images01 = np.asarray(images01, np.float32)
    heat = np.nan_to_num(np.asarray(heatmaps, np.float32))
    if images01.shape != heat.shape:
        raise ValueError(f"heatmaps {heat.shape} must match images {images01.shape}")
    n = len(images01)
    pct = [int(p) for p in percentiles]
    # float64: the table's combined score is the mean of (lerf - morf) / 2; in float32 it matched
    # (mean lerf - mean morf) / 2 only to ~1e-11, which a near-zero difference (an untrained model) shows
    morf, lerf = np.zeros(n, np.float64), np.zeros(n, np.float64)
    net = _DisplayInput(model)
    was_training = model.net.training
    model.net.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for start in range(0, n, batch_size):
                sl = slice(start, min(n, start + batch_size))
                x = torch.from_numpy(images01[sl][:, None].copy())
                t = [ClassifierOutputSoftmaxTarget(int(c)) for c in np.asarray(targets)[sl]]
                morf[sl] = ROADMostRelevantFirstAverage(pct)(x, heat[sl], t, net)
                lerf[sl] = ROADLeastRelevantFirstAverage(pct)(x, heat[sl], t, net)
                if progress is not None:
                    progress(sl.stop - sl.start)
    finally:
        model.net.train(was_training)
    return Road(tuple(pct), morf, lerf)
