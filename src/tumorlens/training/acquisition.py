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


# Random display window of the "acquisition_window" preset: the window's low end moves by up to
# WINDOW_SHIFT either way, its high end too, so part of the range saturates as it does when a slice
# is exported with another window/level (a linear rescaling the recipe's min-max step undoes would
# teach nothing). Written here: TorchIO and MONAI rescale to a fixed window, not a random one.
WINDOW_P = 0.3
WINDOW_SHIFT = 0.25


def random_window(image01: np.ndarray, p: float = WINDOW_P, shift: float = WINDOW_SHIFT) -> np.ndarray:
    """With probability p, the [0, 1] image seen through a random window [lo, hi] (lo in +-shift,
    hi in 1 +- shift), clipped to [0, 1]; torch's global RNG draws, as for the TorchIO part."""
    if torch.rand(()).item() >= p:
        return image01
    lo, hi = ((torch.rand(2) * 2 - 1) * shift).tolist()
    hi += 1.0
    return np.clip((image01 - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


class Acquisition:
    """[0, 1] (H, W) image -> the same image as another acquisition might give it, still in [0, 1]
    after the recipe's percentile clip and min-max step (as a shifted file would be read).
    `window`: also a random display window (the "acquisition_window" preset)."""

    def __init__(self, recipe, window: bool = False):
        self.recipe, self.transform, self.window = recipe, acquisition_transform(), window

    def __call__(self, image01: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image01, dtype=np.float32))[None, :, :, None]
        # RandomGamma needs non-negative values; the input is [0, 1] already
        y = self.transform(x)[0, :, :, 0].numpy()
        if self.window:
            y = random_window(y)
        return self.recipe.scale01(y)
