"""The one temperature-scaled softmax: probabilities = softmax(logits / T) (Guo et al. 2017)."""

from __future__ import annotations

import numpy as np
import torch


def temperature_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """(N, C) logits (tensor or array) -> (N, C) numpy probabilities; integer or half-precision
    logits are computed in float32, float32/float64 keep their precision."""
    x = torch.as_tensor(logits)
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return torch.softmax(x / temperature, dim=1).numpy()
