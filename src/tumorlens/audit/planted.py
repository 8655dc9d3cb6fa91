"""A planted shortcut: a small bright square at a fixed place outside the head, to prove that the
audit finds a cue it was not told about.

The same function marks raw slices of any source (synthetic phantoms, Kaggle JPEGs): the square's
position and side are fractions of the image, so after the recipe's resize it sits at one place in
model coordinates, and its grey is the slice's own maximum, so the recipe's min-max scaling turns it
into the brightest value (1.0) whatever the scanner's range. Pixels of the head are left alone (the
cue stays outside the brain; on a slice whose head fills the corner the square is partly or wholly
absent, which `marker_mask` reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorlens.anatomy.regions import head_mask
from tumorlens.data.sample import Sample, SampleSet


@dataclass(frozen=True)
class Marker:
    """Where the square goes, as fractions of the image height/width (top-left corner by default)."""

    top: float = 0.04
    left: float = 0.04
    side: float = 0.07

    def box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = shape
        s = max(2, int(round(self.side * min(h, w))))
        t, l = int(round(self.top * h)), int(round(self.left * w))
        return t, min(t + s, h), l, min(l + s, w)


def marker_mask(image: np.ndarray, marker: Marker = Marker()) -> np.ndarray:
    """Bool mask of the pixels the marker would set: its square minus the head."""
    img = np.asarray(image, np.float32)
    t, b, l, r = marker.box(img.shape)
    square = np.zeros(img.shape, bool)
    square[t:b, l:r] = True
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return square
    return square & ~head_mask((img - lo) / (hi - lo))


def plant_marker(image: np.ndarray, marker: Marker = Marker()) -> tuple[np.ndarray, np.ndarray]:
    """(marked copy of the raw image, mask of the changed pixels)."""
    img = np.array(image, np.float32, copy=True)
    mask = marker_mask(img, marker)
    img[mask] = float(img.max()) if img.size else 0.0
    return img, mask


def mark_samples(samples: SampleSet, which: str | None = None, marker: Marker = Marker()) -> SampleSet:
    """A copy of `samples` with the marker on every slice (which=None) or on the slices of class `which`.

    meta["planted_marker"] records whether a slice carries it (and meta["planted_marker_mask"] where).
    """
    out = []
    for s in samples.samples:
        meta = dict(s.meta)
        image = s.image
        marked = which is None or s.label == which
        if marked:
            image, mask = plant_marker(s.image, marker)
            meta["planted_marker_mask"] = mask
        meta["planted_marker"] = marked
        out.append(Sample(image=image, label=s.label, mask=s.mask, patient_id=s.patient_id, path=s.path, meta=meta))
    return SampleSet(out, list(samples.classes), samples.root, samples.kind, list(samples.skipped))
