"""The bridge between tumorlens's display space and a foreign network's own input and output.

Every audit edit, explainer and shift works on display images: (N, 1, S, S) grayscale in [0, 1]
at the model's size. `SpecInput` wraps the user's network so that it takes exactly that: it
repeats the gray channel to RGB, applies the declared normalisation, permutes to NHWC for Keras,
and turns declared probabilities back into log-probabilities (softmax of them gives the same
probabilities back, and gradients still flow). Being an nn.Module with the network as its child
`model`, it keeps every hook-based library (pytorch-grad-cam, Captum) working: the CAM layer
`layer4` of the user's network is `model.layer4` of the wrapper.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tumorlens.models.spec import ModelSpec

PROBABILITY_FLOOR = 1e-12  # log(0) guard for models that output exact zeros


class SpecInput(nn.Module):
    """(N, 1, S, S) display images in [0, 1] -> the wrapped network's logits (or log-probabilities)."""

    input_channels = 1  # what callers feed it (display images), whatever the wrapped network takes
    stage_root = "model"  # the user's network: its stages are counted from here (explain/localisation.py)

    def __init__(self, model: nn.Module, spec: ModelSpec, channels: int):
        super().__init__()
        self.model = model
        self.channels = channels
        self.layout = spec.layout
        self.probabilities = spec.outputs == "probabilities"
        ms = spec.mean_std()
        self.zscore = ms is None
        if ms is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32) for v in ms)
            if mean.numel() not in (1, channels) or std.numel() not in (1, channels):
                from tumorlens.models.spec import ModelSpecError

                raise ModelSpecError(f"mean/std have {mean.numel()} values but the model takes {channels} channel(s)")
            self.register_buffer("mean", mean.expand(channels).reshape(1, channels, 1, 1).clone(), persistent=False)
            self.register_buffer("std", std.expand(channels).reshape(1, channels, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = first_tensor(self.model(self.feed(x)))
        if self.probabilities:
            out = torch.log(out.clamp_min(PROBABILITY_FLOOR))
        return out

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """Display images -> what the wrapped network takes (channels, normalisation, layout)."""
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.zscore:  # per image, over all its pixels
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            s = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
            x = (x - m) / s
        else:
            x = (x - self.mean) / self.std
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x


def first_tensor(out: Any) -> torch.Tensor:
    """The class scores of a network's output: a tensor, or the first tensor of a tuple, list or dict
    (some exports return (logits, aux) or {"logits": ...})."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
        return first_tensor(out)
    if isinstance(out, (tuple, list)) and out:
        return first_tensor(out[0])
    if isinstance(out, np.ndarray):
        return torch.from_numpy(out)
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor of class scores")


class BlackBox(nn.Module):
    """A plain function (images -> probabilities or logits) as a module: no gradients, no layers.

    The function gets what the spec declares (channels, layout, normalisation already applied by
    SpecInput) as a float32 numpy array and returns (N, C) scores; its results come back as a
    tensor without a graph, so only gradient-free methods (occlusion) can explain it."""

    def __init__(self, fn: Callable[[np.ndarray], Any]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x.detach().cpu().numpy().astype(np.float32, copy=False))
        if isinstance(out, torch.Tensor):
            return out.detach().float()
        return torch.as_tensor(np.asarray(out, dtype=np.float32))
