"""SLIC superpixels: the interpretable features LIME and KernelSHAP switch on and off."""

from __future__ import annotations

import numpy as np
import torch


def slic_segments(image: np.ndarray, n_segments: int = 50, compactness: float = 0.1) -> np.ndarray:
    """(H, W) image (any range) -> int64 (H, W) labels 0..M-1 (contiguous, as Captum requires).

    The image is min-max scaled first, so `compactness` means the same for every recipe;
    channel_axis=None makes SLIC treat it as one grayscale channel."""
    from skimage.segmentation import slic

    img = np.asarray(image, dtype=np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    labels = slic(img, n_segments=int(n_segments), compactness=float(compactness), channel_axis=None, start_label=0)
    _, contiguous = np.unique(labels, return_inverse=True)
    return contiguous.reshape(labels.shape).astype(np.int64)


def feature_mask(image: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """(1, H, W) model input of one image -> (1, 1, H, W) Captum feature mask."""
    seg = slic_segments(image[0].detach().cpu().numpy(), n_segments, compactness)
    return torch.from_numpy(seg)[None, None]
