"""One way to make a random step repeatable without touching the caller's random state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Inside the block, torch's and numpy's global generators start from `seed`; afterwards both
    are as they were. seed None: nothing is seeded (the block draws from the caller's state).

    Libraries draw from the global generators (pytorch-grad-cam's RandomCAM, Captum's GradientSHAP,
    LIME, KernelSHAP, layer re-initialisation), so a seed must reach them there."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
            yield
    finally:
        np.random.set_state(state)
