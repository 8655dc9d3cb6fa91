"""Where the explanation's attention falls: tumor-candidate areas, brain, skull and scalp,
background; and a few plain sentences built only from those numbers (no outside service).

The brain / skull / background split is the audit's own (tumorlens.anatomy.regions). Tumor
candidates are a heuristic of this module: areas inside the brain much brighter than the rest
of the brain (contrast-enhancing tumors are bright on T1 post-contrast, the modality of the
training data). They are not a segmentation: bright vessels or fat can be candidates, and a
dark lesion is never one. The text says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from tumorlens.audit.attention import analyse_attention
from tumorlens.anatomy.regions import Regions, segment_regions

# Chosen on 300 figshare slices with expert masks (160 px), from thresholds 1.5-3 sigma, with and
# without smoothing and rim erosion: this variant covered the most tumor. It remains weak (there:
# 40 % of tumor pixels covered, 24 % of candidate pixels inside a tumor; benchmarks/RESULTS.md,
# bench_service.py, measures it on all 3,064), which is why the page calls them candidates.
BRIGHT_SIGMAS = 1.5  # robust z-score above the brain's median that makes a pixel "unusually bright"
RIM_FRACTION = 0.025  # the brain's outer rim (of the image side) is skipped: bright fat and vessels
SMOOTH_FRACTION = 0.01  # Gaussian sigma, of the image side: one bright pixel is not an area
MIN_CANDIDATE_SHARE = 0.01  # components smaller than 1 % of the brain are noise


def tumor_candidates(image01: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Bool mask of unusually bright blobs inside the brain (see module docstring)."""
    side = max(image01.shape)
    inner = ndi.binary_erosion(brain, iterations=max(1, round(RIM_FRACTION * side)))
    if inner.sum() < 20:
        return np.zeros_like(brain, dtype=bool)
    smooth = ndi.gaussian_filter(np.asarray(image01, dtype=np.float32), SMOOTH_FRACTION * side)
    values = smooth[inner]
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median))) + 1e-3  # MAD, robust to the tumor itself
    bright = inner & (smooth > median + BRIGHT_SIGMAS * sigma)
    labels, n = ndi.label(bright)
    if n == 0:
        return bright
    sizes = ndi.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= MIN_CANDIDATE_SHARE * inner.sum()) + 1
    return np.isin(labels, keep)


@dataclass
class AttentionSummary:
    shares: dict[str, float]  # attention (energy) share per region; brain includes tumor_candidates
    areas: dict[str, float]  # image-area share per region
    focus: str  # the audit's focus zone holding the heatmap peak
    concentration: dict[str, float | None]  # share / area (1 = no preference), None when undefined

    def to_dict(self) -> dict:
        return {"shares": self.shares, "areas": self.areas, "focus": self.focus, "concentration": self.concentration}


def image_regions(image01: np.ndarray) -> tuple[Regions, np.ndarray]:
    """The regions and tumor candidates of the [0, 1] model-size image (they need no heatmap, so
    the service finds them while the model works)."""
    regions = segment_regions(image01)
    return regions, tumor_candidates(image01, regions.brain)


def attention_summary(heatmap: np.ndarray, image01: np.ndarray,
                      regions: tuple[Regions, np.ndarray] | None = None) -> AttentionSummary:
    """Shares of a non-negative heatmap's mass per region of the [0, 1] model-size image, with the
    audit's own measures (tumorlens.audit.attention), the candidates standing in for a tumor mask.
    regions: image_regions(image01) when already known."""
    regions, candidates = regions if regions is not None else image_regions(image01)
    att = analyse_attention(heatmap, regions, tumor=candidates)
    empty = not np.isfinite(att.energy_brain)

    def clean(x: float) -> float:
        return 0.0 if empty or not np.isfinite(x) else round(float(x), 4)

    shares = {"tumor_candidates": clean(att.energy_tumor), "brain": clean(att.energy_brain),
              "skull": clean(att.energy_skull), "background": clean(att.energy_background)}
    areas = {"tumor_candidates": candidates.mean(), "brain": regions.brain.mean(), "skull": regions.skull.mean(),
             "background": regions.background.mean()}
    areas = {k: round(float(v), 4) for k, v in areas.items()}
    conc = {"tumor_candidates": att.concentration_tumor, "brain": att.concentration_brain}
    conc = {k: (round(float(v), 3) if np.isfinite(v) and not empty else None) for k, v in conc.items()}
    focus = "tumor candidate" if att.focus == "tumor" else att.focus
    return AttentionSummary(shares, areas, "none (empty heatmap)" if empty else focus, conc)


def _pct(x: float) -> str:
    """Whole percent, but never "100%" or "0%" for a value that is not exactly that."""
    if 0 < x < 0.005:
        return f"{max(100 * x, 0.1):.1f}%"
    if 0.995 <= x < 1:
        return f"{min(100 * x, 99.9):.1f}%"
    return f"{100 * x:.0f}%"


def plain_explanation(summary: AttentionSummary, method: str, target_class: str, target_probability: float,
                      predicted: str | None, confidence: float | None) -> str:
    """Three to five short sentences a non-specialist can read, every claim backed by a number."""
    s, a = summary.shares, summary.areas
    out = []
    if predicted is None:
        out.append(f"No class is given for this image (it is unlike the training data); the heatmap shows "
                   f"what drove the score of {target_class} ({_pct(target_probability)}).")
    else:
        out.append(f"The model predicts {predicted} with {_pct(confidence or 0.0)} probability.")
        if target_class != predicted:
            out.append(f"The heatmap shows the evidence for {target_class} ({_pct(target_probability)}).")
    if sum(s.values()) == 0:
        out.append(f"The {method} heatmap is empty, so it cannot say where the model looked.")
        return " ".join(out)
    out.append(f"Of the {method} attention, {_pct(s['brain'])} falls on the brain, {_pct(s['skull'])} on the skull "
               f"and scalp and {_pct(s['background'])} on the background.")
    cand, cand_area = s["tumor_candidates"], a["tumor_candidates"]
    lift = cand / cand_area if cand_area > 0 else 0.0
    if cand_area > 0:
        out.append(f"Unusually bright areas inside the brain (possible tumor, found by a simple intensity rule, "
                   f"not a segmentation) cover {_pct(cand_area)} of the image and receive {_pct(cand)} of the "
                   f"attention ({lift:.1f} times their area share).")
    else:
        out.append("No unusually bright area stands out inside the brain.")
    outside = s["skull"] + s["background"]
    if outside > 0.5:
        out.append("Most attention lies outside the brain: the decision may rest on the skull, the framing or "
                   "the scanner rather than brain tissue, so treat it with suspicion.")
    elif cand_area > 0 and lift >= 2 and cand >= 0.2:
        out.append("Attention concentrates on the bright candidate area, as expected if a visible lesion drove "
                   "the decision.")
    elif target_class == "notumor":
        out.append("Attention spread over the brain without a focus is what a 'no tumor' decision should look like.")
    else:
        out.append("Attention lies mostly on the brain, but not on a clear candidate area.")
    return " ".join(out)
