"""Augmentation suited to MRI slices: small rotations, shifts and zooms, left-right flips,
brightness and contrast; applied to the preprocessed (1, S, S) tensor."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class BrightnessContrast(torch.nn.Module):
    """Random contrast (scale) and brightness (offset) on z-scored input.

    torchvision's ColorJitter expects [0, 1] images; our input is z-scored, so the same idea is
    an affine change of intensities, which is all this does.
    """

    def __init__(self, contrast: float = 0.15, brightness: float = 0.15):
        super().__init__()
        self.contrast, self.brightness = contrast, brightness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1 + (torch.rand(()) * 2 - 1) * self.contrast
        shift = (torch.rand(()) * 2 - 1) * self.brightness
        return x * scale + shift


def mri_augmentation(fill: float) -> v2.Compose:
    """`fill` is the value of black background after z-scoring, so rotations pad with background."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.93, 1.07), fill=fill),
            BrightnessContrast(),
        ]
    )
