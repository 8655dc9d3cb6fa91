"""Running a TumorModel on images the audit has edited in display space ([0, 1], model size).

Every audit perturbation (inpainting, blanking, deletion curves) is made on the display image, the
step of the model's recipe just before z-scoring, so an edited pixel means the same to the model
as an unedited one; this module applies the remaining step and batches the forward passes.
"""

from __future__ import annotations

import numpy as np
import torch

from tumorlens.models.checkpoint import TumorModel


def to_input(model: TumorModel, images01: np.ndarray) -> torch.Tensor:
    """(N, S, S) display images -> (N, 1, S, S) model input tensor."""
    arr = np.asarray(images01, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    return torch.from_numpy(model.recipe.normalize(arr)[:, None].copy())


def probabilities01(model: TumorModel, images01: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Calibrated class probabilities (N, C) of display-space images."""
    arr = np.asarray(images01, dtype=np.float32)
    if len(arr) == 0:
        return np.zeros((0, model.num_classes), np.float32)
    out = [model.probabilities(to_input(model, arr[i : i + batch_size]), batch_size=batch_size)
           for i in range(0, len(arr), batch_size)]
    return np.concatenate(out)
