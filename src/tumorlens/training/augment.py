"""Augmentation suited to MRI slices, applied to a whole batch at once: small rotations, shifts
and zooms, left-right flips, brightness and contrast, each drawn per image.

Presets by name (`tumorlens train --augment NAME`): "none", "flip" (left-right flips only: the
brain is near-symmetric, so a flipped slice is a real slice), "mri" (flips plus the rest),
"acquisition" (this module's "mri" part on the batch, plus TorchIO's per-image acquisition
transforms in the data loader: tumorlens.training.acquisition).

Written with affine_grid/grid_sample rather than torchvision.transforms.v2 because v2 draws one
set of parameters per call: per-image parameters would need a Python loop over the batch, which
cost about 30 ms per image on this 2-core machine, as much as the model's own training step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tumorlens.training.augment_presets import AUGMENT_PRESETS, augment_preset  # noqa: F401 (re-exported)


def make_augment(name: str | bool, fill: float) -> "BatchAugment | None":
    name = augment_preset(name)
    if name == "none":
        return None
    if name == "flip":
        return BatchAugment(fill, degrees=0.0, translate=0.0, scale=(1.0, 1.0), contrast=0.0, brightness=0.0)
    return BatchAugment(fill)


class BatchAugment(torch.nn.Module):
    def __init__(
        self,
        fill: float,
        degrees: float = 10.0,
        translate: float = 0.05,
        scale: tuple[float, float] = (0.93, 1.07),
        flip: bool = True,
        contrast: float = 0.15,
        brightness: float = 0.15,
    ):
        super().__init__()
        self.fill, self.degrees, self.translate, self.scale = fill, degrees, translate, scale
        self.flip, self.contrast, self.brightness = flip, contrast, brightness

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        theta = self.draw_theta(x.shape[0], generator)
        return self.jitter(self.warp(x, theta, self.fill), generator)

    def draw_theta(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image affine matrices (n, 2, 3): rotation, zoom, flip and shift. Separate from the
        warp so that a mask can be moved by the same matrices as its image (segmentation)."""

        def uniform(lo, hi):
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        zoom = uniform(*self.scale)
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
        theta[:, :, 2] = (torch.rand(n, 2, generator=generator) * 2 - 1) * 2 * self.translate
        return theta

    @staticmethod
    def warp(x: torch.Tensor, theta: torch.Tensor, fill: float) -> torch.Tensor:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        # grid_sample pads with zeros; shift so the padding is the background value instead.
        return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill

    def jitter(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image contrast gain and brightness shift (intensity only; masks skip this)."""
        n = x.shape[0]
        gain = (1 - self.contrast) + 2 * self.contrast * torch.rand(n, generator=generator)
        shift = -self.brightness + 2 * self.brightness * torch.rand(n, generator=generator)
        return x * gain.view(n, 1, 1, 1) + shift.view(n, 1, 1, 1)
