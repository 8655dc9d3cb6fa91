"""Acquisition augmentation: what another scanner, protocol or patient does to a slice.

TorchIO's MRI transforms, each drawn per image with its own probability: gamma, a smooth bias
field, Gaussian noise, blur, resolution loss (down-sampling then up), ghosting, motion and a
k-space spike. TorchIO rather than MONAI because only TorchIO has ghosting and motion (MONAI has
no k-space motion model). A 2-D slice is a (1, H, W, 1) TorchIO image; the transforms run on the
[0, 1] display image before the recipe's intensity standardisation, where a scanner would act.
"""

from __future__ import annotations

import numpy as np
import torch

def acquisition_transform():
    """The TorchIO chain of the "acquisition" preset, as AUGMENT_PRESETS describes it (torch's
    global RNG draws its parameters, so a seeded run is repeatable)."""
    import torchio as tio

    return tio.Compose([
        tio.RandomGamma(log_gamma=(-0.6, 0.6), p=0.5),
        tio.RandomBiasField(coefficients=0.5, order=3, p=0.3),
        tio.RandomNoise(std=(0.0, 0.05), p=0.3),
        tio.RandomBlur(std=(0.0, 1.5), p=0.2),
        tio.RandomAnisotropy(axes=(0, 1), downsampling=(1.5, 3.5), p=0.2),
        tio.RandomGhosting(num_ghosts=(2, 6), axes=(0, 1), intensity=(0.2, 0.6), p=0.15),
        tio.RandomMotion(degrees=5, translation=5, num_transforms=2, p=0.15),
        tio.RandomSpike(num_spikes=1, intensity=(0.1, 0.3), p=0.1),
    ])


class Acquisition:
    """[0, 1] (H, W) image -> the same image as another acquisition might give it, still in [0, 1]
    after the recipe's percentile clip and min-max step (as a shifted file would be read)."""

    def __init__(self, recipe):
        self.recipe, self.transform = recipe, acquisition_transform()

    def __call__(self, image01: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image01, dtype=np.float32))[None, :, :, None]
        # RandomGamma needs non-negative values; the input is [0, 1] already
        y = self.transform(x)[0, :, :, 0].numpy()
        return self.recipe.scale01(y)
