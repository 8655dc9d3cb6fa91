"""Outside-brain randomisation: during training, what lies outside the brain (skull, scalp,
background, framing, text) stops carrying the class, so the model has to read the brain.

With probability p per image, the pixels outside the audit's brain region (tumorlens.anatomy.regions,
the regions the shortcut check blanks) are replaced by one of, drawn evenly:
- "blank": the background grey (brain-only input, as the audit's brain-only version);
- "swap": the outside of another training image (any class), whose own brain is blanked, so
  framing, skull and brightness outside come from a random image;
- "noise": a random grey level plus Gaussian noise.
The brain's pixels are never changed. Works on display images ([0, 1], after the recipe's
standardisation), where the audit edits pixels. Written here: no library randomises a region
given by a mask.
"""

from __future__ import annotations

import numpy as np

OUTSIDE_MODES = {
    "keep": "outside the brain untouched",
    "randomize": "with probability --outside-p, outside the brain becomes blank, another image's outside, or noise",
    "blank": "with probability --outside-p, outside the brain becomes the background grey",
}


def check_outside_mode(mode: str) -> str:
    if mode not in OUTSIDE_MODES:
        raise ValueError(f"unknown --outside-brain {mode!r}; choose one of: {', '.join(OUTSIDE_MODES)}")
    return mode


class OutsideBrain:
    def __init__(self, mode: str, p: float, brains: np.ndarray, fills: np.ndarray, donors, rng: np.random.Generator):
        """brains: (N, S, S) bool brain masks of the training images; fills: their background greys;
        donors: their (N, S, S) display images to take a swapped outside from, or a function i -> the
        i-th display image (computed when needed, to keep memory down)."""
        self.mode, self.p = check_outside_mode(mode), float(p)
        if not 0 <= self.p <= 1:
            raise ValueError(f"--outside-p must lie in [0, 1], got {p}")
        self.brains, self.fills, self.donors, self.rng = brains, fills, donors, rng

    def __call__(self, image01: np.ndarray, i: int) -> np.ndarray:
        brain = self.brains[i]
        if self.mode == "keep" or not brain.any() or self.rng.random() >= self.p:
            return image01
        kind = "blank" if self.mode == "blank" else self.rng.choice(["blank", "swap", "noise"])
        if kind == "blank":
            outside = np.full(image01.shape, self.fills[i], np.float32)
        elif kind == "swap":
            j = int(self.rng.integers(len(self.brains)))
            donor = self.donors(j) if callable(self.donors) else self.donors[j]
            outside = np.where(self.brains[j], self.fills[j], donor).astype(np.float32)
        else:
            level, sd = self.rng.uniform(0, 0.6), self.rng.uniform(0, 0.15)
            outside = np.clip(level + sd * self.rng.standard_normal(image01.shape), 0, 1).astype(np.float32)
        return np.where(brain, image01, outside).astype(np.float32)
