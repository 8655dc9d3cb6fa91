"""The input check over a set of images, as reports show it: how many look unlike brain MRI, which,
and small thumbnails of the first few (the audit report's gallery)."""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

GALLERY = 12  # thumbnails kept
THUMB = 96  # px


def thumbnail_png(image: np.ndarray, size: int = THUMB) -> str:
    """A base64 PNG of the image, 1-99 % stretched to 8 bits, longest side `size`."""
    import cv2

    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img, [1, 99])
    img = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    scale = size / max(img.shape)
    img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    return base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()


def summarise(paths: Sequence[str], checks: Sequence, gallery: dict[int, np.ndarray] | None = None) -> dict:
    """{checked, flagged, threshold, flagged_images: [{path, score, warning}], message[, gallery]}.
    gallery: index -> pixels of flagged images to show as thumbnails. Flagged images stay in whatever
    is measured: the summary only names them."""
    flagged = [(i, p, c) for i, (p, c) in enumerate(zip(paths, checks)) if not c.ok]
    out = {"checked": len(checks), "flagged": len(flagged),
           "threshold": next((c.threshold for c in checks if c.threshold is not None), None),
           "flagged_images": [{"path": str(p), "score": c.score, "warning": c.message()} for _, p, c in flagged]}
    out["message"] = (f"{len(flagged)} of {len(checks)} images look unlike brain MRI slices (tumorlens input check); "
                      "results for them are not meaningful") if flagged else ""
    if gallery is not None:
        out["gallery"] = [{"path": str(p), "score": c.score, "png": thumbnail_png(gallery[i])}
                          for i, p, c in flagged if i in gallery]
    return out


def check_sample_set(samples, progress: bool = True, desc: str = "input check") -> tuple[dict, np.ndarray]:
    """(summarise() over every image of a SampleSet, read chunk by chunk, with the first GALLERY flagged
    images as thumbnails; a bool mask of the samples that pass). An unreadable sample passes: the
    callers' own reads report those."""
    from tumorlens.inputcheck.check import check_samples

    paths, checks, gallery = [], [], {}
    ok = np.ones(len(samples), bool)
    for chunk in samples.chunks(64, progress=progress, desc=desc):
        for i, s, im, c in zip(chunk.indices, chunk.samples, chunk.images, check_samples(chunk.samples, chunk.images)):
            if not c.ok and len(gallery) < GALLERY:
                gallery[len(paths)] = im
            ok[i] = c.ok
            paths.append(s.path)
            checks.append(c)
    return summarise(paths, checks, gallery), ok
