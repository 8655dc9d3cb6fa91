"""Where a heatmap puts its attention, per image: pure functions of (heatmap, regions, tumor mask).

Terms used throughout the audit (and printed in the report):
- energy share of a zone = sum of the heatmap inside the zone / sum over the image (heatmaps are
  non-negative); "energy in tumor" is the energy-based pointing game (Wang et al., Score-CAM, 2020)
  with the expert mask instead of a bounding box.
- concentration of a zone = energy share / area share (1 = no preference, > 1 = attention
  concentrates there); lets a small tumor be compared with a large brain.
- peak = the maximum of the heatmap after a light Gaussian smoothing (so a single hot pixel does
  not decide); pointing game hit = the peak lies inside the tumor or within POINTING_TOLERANCE_PX
  pixels of it (at model input size; Zhang et al. 2016 used 15 px at 224 px).
- focus = the attention zone holding the peak: "tumor" (within the tolerance), "brain outside the
  tumor", "skull or edge" (skull-and-scalp ring, or head tissue in the image's outer border band,
  where the frame cuts the head), "background" (outside the head); on images with no tumor marked
  (no mask, or a slice without tumor) a peak in the brain is just "brain".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from tumorlens.anatomy.regions import Regions

POINTING_TOLERANCE_PX = 5
EDGE_BAND_FRACTION = 0.03  # outer band of the image, as a fraction of its side
PEAK_SMOOTH_SIGMA = 1.0

FOCUS_TUMOR = "tumor"
FOCUS_BRAIN = "brain outside the tumor"
FOCUS_BRAIN_UNMARKED = "brain"  # no tumor marked on this image: nothing to be outside of
FOCUS_SKULL = "skull or edge"
FOCUS_BACKGROUND = "background"
FOCUS_LABELS = (FOCUS_TUMOR, FOCUS_BRAIN, FOCUS_BRAIN_UNMARKED, FOCUS_SKULL, FOCUS_BACKGROUND)
OUTSIDE_BRAIN = (FOCUS_SKULL, FOCUS_BACKGROUND)

FLAG_RIGHT_WRONG_REASON = "correct but focused outside the brain"
FLAG_WRONG_BACKGROUND = "wrong and focused on background"
FLAG_WRONG_SKULL = "wrong and focused on skull or edge"
FLAG_TUMOR_MISSED = "correct but the tumor is missed"


@dataclass
class Attention:
    """Attention analysis of one heatmap. NaN where a tumor mask is needed and absent."""

    energy_background: float
    energy_skull: float
    energy_brain: float  # the whole brain region, tumor included
    energy_tumor: float
    energy_outside_brain: float
    concentration_brain: float
    concentration_tumor: float
    peak_y: int
    peak_x: int
    peak_region: str  # background / skull / brain / tumor (strict: the pixel's own region)
    focus: str  # one of FOCUS_LABELS
    pointing_hit: float  # 1.0 / 0.0, NaN without a tumor
    peak_tumor_distance_px: float
    has_tumor: bool = False
    flags: list[str] = field(default_factory=list)

    def row(self) -> dict:
        d = asdict(self)
        d["flags"] = "; ".join(self.flags)
        return d


def _shares(heatmap: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    total = float(heatmap.sum())
    if total <= 0:
        return {k: float("nan") for k in masks}
    return {k: float(heatmap[m].sum() / total) for k, m in masks.items()}


def edge_band(shape: tuple[int, int], fraction: float = EDGE_BAND_FRACTION) -> np.ndarray:
    h, w = shape
    k = max(1, int(round(min(h, w) * fraction)))
    band = np.zeros(shape, bool)
    band[:k] = band[-k:] = True
    band[:, :k] = band[:, -k:] = True
    return band


def attention_zones(regions: Regions, tumor: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Partition of the image into the four focus zones (tumor first, then edge, then regions)."""
    shape = regions.shape
    tumor = np.zeros(shape, bool) if tumor is None else np.asarray(tumor, bool)
    edge = edge_band(shape) & regions.head
    zones = {
        FOCUS_TUMOR: tumor,
        FOCUS_SKULL: (regions.skull | edge) & ~tumor,
        FOCUS_BACKGROUND: regions.background & ~tumor & ~edge,
    }
    zones[FOCUS_BRAIN] = regions.brain & ~tumor & ~zones[FOCUS_SKULL]
    return zones


def heatmap_peak(heatmap: np.ndarray, sigma: float = PEAK_SMOOTH_SIGMA) -> tuple[int, int]:
    sm = cv2.GaussianBlur(np.asarray(heatmap, np.float32), (0, 0), sigma) if sigma > 0 else heatmap
    y, x = np.unravel_index(int(np.argmax(sm)), sm.shape)
    return int(y), int(x)


def analyse_attention(
    heatmap: np.ndarray,
    regions: Regions,
    tumor: np.ndarray | None = None,
    correct: bool | None = None,
    tolerance_px: float = POINTING_TOLERANCE_PX,
) -> Attention:
    """Energy shares, peak, focus label, pointing game and flags for one heatmap.

    tumor: bool mask at heatmap size, or None when unknown; an all-False mask means "no tumor"
    (tumor-based measures are then NaN, as for an unknown mask).
    correct: whether the model's prediction was right (None: no flags that need it).
    """
    hm = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, None)
    if hm.shape != regions.shape:
        raise ValueError(f"heatmap shape {hm.shape} differs from regions shape {regions.shape}")
    has_tumor = tumor is not None and bool(np.asarray(tumor).any())
    tmask = np.asarray(tumor, bool) if has_tumor else np.zeros(hm.shape, bool)
    if tumor is not None and np.asarray(tumor).shape != hm.shape:
        raise ValueError(f"tumor mask shape {np.asarray(tumor).shape} differs from heatmap shape {hm.shape}")

    sh = _shares(hm, {"bg": regions.background, "skull": regions.skull, "brain": regions.brain,
                      "tumor": tmask, "outside": ~regions.brain})
    area = hm.size
    conc_brain = sh["brain"] / (regions.brain.sum() / area) if regions.brain.any() else float("nan")
    conc_tumor = sh["tumor"] / (tmask.sum() / area) if has_tumor else float("nan")

    py, px = heatmap_peak(hm)
    if has_tumor:
        # distance from the peak to the nearest tumor pixel (0 inside)
        dist = cv2.distanceTransform((~tmask).astype(np.uint8), cv2.DIST_L2, 5)
        d = float(dist[py, px])
    else:
        d = float("nan")
    if has_tumor and tmask[py, px]:
        peak_region = "tumor"
    elif regions.brain[py, px]:
        peak_region = "brain"
    elif regions.skull[py, px]:
        peak_region = "skull"
    else:
        peak_region = "background"

    zones = attention_zones(regions, tmask)
    if has_tumor and d <= tolerance_px:
        focus = FOCUS_TUMOR
    else:
        focus = next(name for name in (FOCUS_SKULL, FOCUS_BACKGROUND, FOCUS_BRAIN, FOCUS_TUMOR) if zones[name][py, px])
        if focus == FOCUS_BRAIN and not has_tumor:
            focus = FOCUS_BRAIN_UNMARKED

    flags: list[str] = []
    if correct is True and focus in OUTSIDE_BRAIN:
        flags.append(FLAG_RIGHT_WRONG_REASON)
    if correct is False and focus == FOCUS_BACKGROUND:
        flags.append(FLAG_WRONG_BACKGROUND)
    if correct is False and focus == FOCUS_SKULL:
        flags.append(FLAG_WRONG_SKULL)
    if correct is True and has_tumor and focus == FOCUS_BRAIN:
        flags.append(FLAG_TUMOR_MISSED)

    return Attention(
        energy_background=sh["bg"],
        energy_skull=sh["skull"],
        energy_brain=sh["brain"],
        energy_tumor=sh["tumor"] if has_tumor else float("nan"),
        energy_outside_brain=sh["outside"],
        concentration_brain=float(conc_brain),
        concentration_tumor=float(conc_tumor),
        peak_y=py,
        peak_x=px,
        peak_region=peak_region,
        focus=focus,
        pointing_hit=float(d <= tolerance_px) if has_tumor else float("nan"),
        peak_tumor_distance_px=d,
        has_tumor=has_tumor,
        flags=flags,
    )
