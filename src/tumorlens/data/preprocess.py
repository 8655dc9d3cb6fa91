"""One declared preprocessing recipe, saved in every checkpoint and applied identically everywhere.

Steps, in order (as published counterfactual work on these datasets does):
1. optional crop to the head (bounding box of the largest bright component, padded square),
2. resize to the model size (area interpolation when shrinking, linear when enlarging),
3. clip to the [clip_low, clip_high] percentiles and min-max scale to [0, 1],
4. optional intensity standardisation (`intensity`): "minmax" (none beyond step 3; every
   checkpoint written before this option) or "head_rank": each head pixel becomes its rank among
   the head's pixels (0 to 1), the background 0. Ranks do not move under any increasing intensity
   change (gamma, contrast, brightness, a scanner's grey mapping), so such an acquisition shift
   cannot change what the model sees, apart from the head outline's few rim pixels; or
   "hull_rank": the same ranks within the convex hull of the head's bright parts, an outline that
   an intensity window blacking out the low end moves far less (issue 27, lever 4);
5. z-score with the recipe's declared mean and std (fixed numbers, so a pixel means the same in
   every image and a blanked region has the same value everywhere).

Steps 1-4 make the "display" image ([0, 1], model size) on which the audit edits pixels.

Masks follow steps 1-2 only (nearest neighbour), so they stay aligned with the model input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from tumorlens.anatomy.head import head_box
from tumorlens.anatomy.regions import head_hull, head_mask
from tumorlens.errors import TumorlensError


@dataclass(frozen=True)
class PreprocessRecipe:
    size: int = 160
    clip_low: float = 1.0
    clip_high: float = 99.0
    mean: float = 0.5
    std: float = 0.25
    crop_to_head: bool = False
    intensity: str = "minmax"  # one of INTENSITY_METHODS; older checkpoints lack the field: "minmax"
    # resize filter: "auto" (area when shrinking, linear when enlarging; every tumorlens checkpoint) or
    # the one a foreign model's spec declares (nearest, bilinear, bicubic, area)
    interpolation: str = "auto"
    # step 3 for a foreign model trained on x / value_max (e.g. 255): divide and clip instead of the
    # per-image percentile min-max; None (every tumorlens checkpoint): min-max
    value_max: float | None = None

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_METHODS:
            raise TumorlensError(f"unknown intensity standardisation {self.intensity!r}; choose one of: {', '.join(INTENSITY_METHODS)}")
        if self.size < 8:
            raise TumorlensError(f"size must be at least 8 pixels, got {self.size}")
        if not 0 <= self.clip_low < self.clip_high <= 100:
            raise TumorlensError(f"need 0 <= clip_low < clip_high <= 100, got {self.clip_low}, {self.clip_high}")
        if self.std <= 0:
            raise TumorlensError(f"std must be positive, got {self.std}")
        if self.value_max is not None and not self.value_max > 0:
            raise TumorlensError(f"value_max must be positive, got {self.value_max}")
        if self.interpolation not in INTERPOLATIONS:
            raise TumorlensError(f"unknown interpolation {self.interpolation!r}; choose one of: {', '.join(INTERPOLATIONS)}")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        for key, default in (("interpolation", "auto"), ("value_max", None)):
            if d[key] == default:  # checkpoints keep the fields they always had
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessRecipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TumorlensError(f"unknown preprocessing fields: {sorted(unknown)}")
        return cls(**d)

    # -- steps ---------------------------------------------------------------------------------
    def head_box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) of a square box around the head, or None for the whole image."""
        if not self.crop_to_head:
            return None
        return head_box(image)

    def geometry(self, image: np.ndarray, box=None, nearest: bool = False) -> np.ndarray:
        """Crop (if enabled) and resize an image or mask to size x size."""
        arr = np.asarray(image)
        if box is None:
            box = self.head_box(arr) if not nearest else None
        if box is not None:
            t, b, l, r = box
            arr = arr[t:b, l:r]
        if arr.shape == (self.size, self.size):
            return arr.copy()
        if nearest:
            return cv2.resize(arr.astype(np.uint8), (self.size, self.size), interpolation=cv2.INTER_NEAREST).astype(
                np.asarray(image).dtype
            )
        interp = INTERPOLATIONS[self.interpolation]
        if interp is None:
            interp = cv2.INTER_AREA if max(arr.shape) > self.size else cv2.INTER_LINEAR
        return cv2.resize(arr.astype(np.float32), (self.size, self.size), interpolation=interp)

    def scale01(self, image: np.ndarray) -> np.ndarray:
        """Percentile clip and min-max to [0, 1]; a constant image becomes all zeros. With value_max:
        image / value_max, clipped to [0, 1]."""
        img = np.asarray(image, dtype=np.float32)
        if self.value_max is not None:
            return np.clip(img / np.float32(self.value_max), 0.0, 1.0)
        lo, hi = self._clip_bounds(img)
        if hi <= lo:
            return np.zeros_like(img, dtype=np.float32)
        # In place, in float64 as the bounds are: the same numbers as np.clip((img - lo) / (hi - lo)),
        # with one temporary array instead of three.
        out = np.subtract(img, lo)
        out /= hi - lo
        return np.clip(out, 0.0, 1.0, out=out).astype(np.float32)

    def _clip_bounds(self, img: np.ndarray) -> tuple[np.float64, np.float64]:
        # The 0th and 100th percentiles are the minimum and maximum: 20x cheaper than np.percentile's
        # partition, and kept float64 (percentile's type) so the arithmetic above is unchanged.
        lo = np.float64(img.min()) if self.clip_low == 0 else None
        hi = np.float64(img.max()) if self.clip_high == 100 else None
        if lo is None or hi is None:
            p_lo, p_hi = np.percentile(img, [self.clip_low, self.clip_high])
            lo, hi = (p_lo if lo is None else lo), (p_hi if hi is None else hi)
        return lo, hi

    def standardise(self, image01: np.ndarray) -> np.ndarray:
        """Step 4 on a [0, 1] model-size image (see the module docstring)."""
        if self.intensity == "minmax":
            return image01
        return head_rank(image01, RANK_OUTLINES[self.intensity])

    def normalize(self, image01: np.ndarray) -> np.ndarray:
        return ((np.asarray(image01, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def acquired(self, image: np.ndarray) -> np.ndarray:
        """Steps 1-3: the [0, 1] image at model size before the intensity standardisation; where an
        acquisition shift acts (for "minmax" recipes this is the display image)."""
        return self.scale01(self.geometry(image))

    def from_acquired(self, image01: np.ndarray) -> np.ndarray:
        """An acquired-space image edited as a scanner would (e.g. a robustness shift) -> the display
        image a file with those pixels would give: steps 3-4 again (for "minmax": step 3 only)."""
        if self.value_max is not None:  # a file keeps its pixels: nothing re-scales them
            return self.standardise(np.clip(np.asarray(image01, dtype=np.float32), 0.0, 1.0))
        return self.standardise(self.scale01(image01))

    def display(self, image: np.ndarray) -> np.ndarray:
        """The [0, 1] image at model size, as the model sees it before z-scoring (for overlays and regions)."""
        return self.standardise(self.acquired(image))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Raw 2-D image -> float32 (size, size) model input."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise TumorlensError(f"expected a 2-D grayscale image, got shape {image.shape}")
        return self.normalize(self.display(image))

    def mask(self, mask: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """A tumor (or region) mask brought to the model geometry of `image`."""
        box = self.head_box(image) if image is not None else None
        return self.geometry(np.asarray(mask).astype(np.uint8), box=box, nearest=True).astype(bool)

    def batch(self, images) -> np.ndarray:
        """Several raw images -> float32 (N, 1, size, size), filled into one array."""
        images = list(images)
        out = np.empty((len(images), 1, self.size, self.size), dtype=np.float32)
        for i, im in enumerate(images):
            out[i, 0] = self(im)
        return out


INTERPOLATIONS = {"auto": None, "nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                  "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}

# name -> what it does (the CLI help and the model card read these)
INTENSITY_METHODS = {
    "minmax": "percentile clip and min-max scaling only",
    "head_rank": "rank of each pixel within the head (0-1), background 0: unmoved by any increasing intensity change",
    "hull_rank": "head_rank within the convex hull of the head's bright parts: an outline that low-end windows barely move",
}
# each ranked method above -> the head outline its ranks are taken within
RANK_OUTLINES = {"head_rank": head_mask, "hull_rank": head_hull}


def head_rank(image01: np.ndarray, outline=head_mask) -> np.ndarray:
    """Each head pixel -> its mid-rank among the head's pixels / their count (ties share a rank,
    so a flat region stays flat); background -> 0. The head is `outline(image01)`: the audit's own
    head mask, or a variant from RANK_OUTLINES; an image without a head is ranked whole. scipy's
    rankdata does the ranking."""
    from scipy.stats import rankdata

    img = np.asarray(image01, dtype=np.float32)
    head = outline(img)
    if not head.any():
        head = np.ones(img.shape, bool)
    out = np.zeros(img.shape, np.float32)
    values = img[head]
    out[head] = (rankdata(values, method="average") / len(values)).astype(np.float32)
    return out
