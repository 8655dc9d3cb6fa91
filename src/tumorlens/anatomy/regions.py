"""Head, skull-and-scalp ring, brain and background of one slice, by classical image processing.

Why classical: the audit must segment every image of any dataset, automatically, in about a
millisecond, without a model that could itself be biased. Steps (on the [0, 1] display image):

1. smooth (Gaussian), threshold at half the Otsu level (low, so dark tissue such as bone or
   necrosis joins the head), open to cut thin lines (scanner frames, text), keep the largest
   component and fill its holes -> head;
2. the skull and scalp form the outer ring of the head: pixels whose distance to the outside is
   below a thickness proportional to the head's equivalent radius (adaptive to zoom and size);
3. where the skull is thicker than that ring, the dark bone band just inside it is peeled off too:
   pixels darker than half the brain's median grey, within a further band, connected to the ring;
4. brain = head minus the ring; background = everything outside the head.

Validated on all 3,064 figshare slices with expert tumor masks (benchmarks/bench_audit.py):
the tumor must fall inside the brain region. Known limit: on sagittal and coronal slices the
brain region also holds face and neck tissue below the skull, which no ring can separate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Ring thickness as a fraction of the head's equivalent radius sqrt(area / pi). Scalp plus skull
# is about 10-15 mm of an adult head radius of ~85 mm; 0.12 keeps >99.8 % of figshare tumor pixels
# inside the brain (see benchmarks/RESULTS.md) while covering the bright scalp fat.
RING_FRACTION = 0.12
MIN_RING_PX = 2
THRESHOLD_FACTOR = 0.5  # of the Otsu level
PEEL_FRACTION = 0.08  # how much deeper than the ring dark bone may be peeled, x head radius
PEEL_DARKNESS = 0.5  # "dark" = below this share of the brain's median grey (bone, not grey matter)
MIN_HEAD_SHARE = 0.01  # a head smaller than 1 % of the image is treated as "no head found"
HULL_PART_SHARE = 0.005  # head_hull ignores bright specks smaller than this share of the image


@dataclass
class Regions:
    """Disjoint bool masks covering the image: background | skull | brain; head = skull | brain."""

    background: np.ndarray
    skull: np.ndarray
    brain: np.ndarray
    head: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.head.shape

    def label_map(self) -> np.ndarray:
        """uint8 map: 0 background, 1 skull and scalp, 2 brain (for figures and quick checks)."""
        out = np.zeros(self.shape, np.uint8)
        out[self.skull] = 1
        out[self.brain] = 2
        return out

    @classmethod
    def from_masks(cls, head: np.ndarray, brain: np.ndarray) -> Regions:
        """Regions from known head and brain masks (synthetic phantoms carry exact ones)."""
        head = np.asarray(head, bool)
        brain = np.asarray(brain, bool) & head
        return cls(background=~head, skull=head & ~brain, brain=brain, head=head)


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Holes = what a flood fill from outside the (padded) image cannot reach; OpenCV's flood
    fill is several times faster than scipy's binary_fill_holes at this size."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return mask | (outside[1:-1, 1:-1] == 0)


def _bright_parts(image01: np.ndarray, threshold_factor: float) -> tuple[int, np.ndarray, np.ndarray, int]:
    """Step 1's components: (count incl. background, labels, stats, kernel side), or count 0 if
    the image has no bright part at all."""
    img = np.asarray(image01, dtype=np.float32)
    h, w = img.shape
    u8 = (np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
    sigma = max(1.0, min(h, w) / 160)
    smooth = cv2.GaussianBlur(u8, (0, 0), sigma)
    otsu, _ = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    k = _odd(min(h, w) / 40)
    if otsu <= 0:
        return 0, np.zeros((h, w), np.int32), np.zeros((0, 5), np.int32), k
    binary = (smooth > otsu * threshold_factor).astype(np.uint8)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    return n, labels, stats, k


def head_mask(image01: np.ndarray, threshold_factor: float = THRESHOLD_FACTOR) -> np.ndarray:
    """Bool mask of the head: largest bright component with holes filled (empty if none found).
    A pixel is bright above `threshold_factor` x the Otsu level of the smoothed image."""
    n, labels, stats, k = _bright_parts(image01, threshold_factor)
    if n <= 1:
        return np.zeros(labels.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    head = labels == largest
    # close small notches before filling, so a dark sulcus at the rim does not open a hole to the outside
    head = cv2.morphologyEx(head.astype(np.uint8), cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    head = _fill_holes(head)
    if head.mean() < MIN_HEAD_SHARE:
        return np.zeros(labels.shape, bool)
    return head


def head_hull(image01: np.ndarray) -> np.ndarray:
    """Bool mask of the head as the convex hull of every bright part of at least HULL_PART_SHARE of
    the image (empty if none found).

    Why a hull: an intensity window that blacks out the low end ("brightness down") cuts the head's
    dark tissue and splits what is left into pieces, so head_mask's largest piece can be a tenth of
    the head; the pieces still reach the head's outline, and their hull does not need what was cut.
    On 229 Kaggle Training slices, under each of the robustness check's intensity shifts, its mean
    IoU with itself on the clean slice is at least 0.91 (head_mask's under brightness down: 0.53-0.57);
    benchmarks/experiments/head_mask_invariance.py.
    """
    n, labels, stats, _ = _bright_parts(image01, THRESHOLD_FACTOR)
    h, w = labels.shape
    parts = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= HULL_PART_SHARE * h * w]
    if not parts:
        return np.zeros((h, w), bool)
    points = cv2.findNonZero(np.isin(labels, parts).astype(np.uint8))
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    head = hull.astype(bool)
    return head if head.mean() >= MIN_HEAD_SHARE else np.zeros((h, w), bool)


def segment_regions(image01: np.ndarray, ring_fraction: float = RING_FRACTION) -> Regions:
    """Background, skull-and-scalp ring, brain and head of a [0, 1] grayscale slice."""
    img = np.asarray(image01)
    if img.ndim != 2:
        raise ValueError(f"segment_regions needs a 2-D image, got shape {img.shape}")
    head = head_mask(img)
    if not head.any():
        empty = np.zeros(img.shape, bool)
        return Regions(background=~empty, skull=empty.copy(), brain=empty.copy(), head=empty.copy())
    # distance to the outside of the head; the image border counts as outside (a head cut by the
    # frame still gets its ring there, since what touches the frame is not deep brain)
    padded = np.pad(head, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    radius = float(np.sqrt(head.sum() / np.pi))
    thickness = max(MIN_RING_PX, ring_fraction * radius)
    brain = dist > thickness
    if brain.any():
        # a thick skull: its dark bone continues inside the ring; peel what is dark and touches the ring
        dark = np.asarray(img, np.float32) < PEEL_DARKNESS * float(np.median(img[brain]))
        band = (brain & dark & (dist <= thickness + PEEL_FRACTION * radius)).astype(np.uint8)
        ring_grown = cv2.dilate((head & ~brain).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        n, labels = cv2.connectedComponents(band, connectivity=8)
        if n > 1:
            touching = np.unique(labels[ring_grown & (band > 0)])
            brain &= ~np.isin(labels, touching[touching > 0])
    return Regions(background=~head, skull=head & ~brain, brain=brain, head=head)
