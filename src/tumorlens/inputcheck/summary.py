"""The input check over a set of images, as reports show it: how many look unlike brain MRI, which,
and small thumbnails of the first few (the audit report's gallery)."""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

GALLERY = 12  # thumbnails kept
THUMB = 96  # px
CHUNK = 64  # images checked per batch (and per Ray task)


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


def summarise(paths: Sequence[str], checks: Sequence, gallery: dict[int, str] | None = None) -> dict:
    """{checked, flagged, threshold, flagged_images: [{path, score, warning}], message[, gallery]}.
    gallery: index -> thumbnail_png of flagged images to show. Flagged images stay in whatever is
    measured: the summary only names them."""
    flagged = [(i, p, c) for i, (p, c) in enumerate(zip(paths, checks)) if not c.ok]
    out = {"checked": len(checks), "flagged": len(flagged),
           "threshold": next((c.threshold for c in checks if c.threshold is not None), None),
           "flagged_images": [{"path": str(p), "score": c.score, "warning": c.message()} for _, p, c in flagged]}
    out["message"] = (f"{len(flagged)} of {len(checks)} images look unlike brain MRI slices (tumorlens input check); "
                      "results for them are not meaningful") if flagged else ""
    if gallery is not None:
        out["gallery"] = [{"path": str(p), "score": c.score, "png": gallery[i]}
                          for i, p, c in flagged if i in gallery]
    return out


def check_sample_set(samples, progress: bool = True, desc: str = "input check", ray: str | None = None,
                     ray_workers: int | None = None) -> tuple[dict, np.ndarray]:
    """(summarise() over every image of a SampleSet, read chunk by chunk, with the first GALLERY flagged
    images as thumbnails; a bool mask of the samples that pass). An unreadable sample passes and keeps
    its error (sample.error), for the caller to drop (SampleSet.drop_unreadable).

    ray: a Ray cluster ('auto' or its address): the chunks are read and checked on its workers (the
    check is per-image work like the audit's image pass: at a million slices, hours in one process);
    only the verdicts, what each read taught its sample and the flagged images' thumbnails come back."""
    if ray:
        from tumorlens.cluster import ordered_map

        parts = [list(samples.samples[s : s + CHUNK]) for s in range(0, len(samples), CHUNK)]
        done = ordered_map(ScreenWorker, parts, address=ray, workers=ray_workers, actors=False, progress=progress,
                           desc=desc, unit_sizes=[len(p) for p in parts])

        def learned(n: int, positions, checks, thumbs, facts):
            for s, f in zip(parts[n], facts):  # what the worker's read taught each sample (an unreadable file's error)
                s.learn(f)
            return n * CHUNK + positions, checks, thumbs

        chunks = (learned(n, *got) for n, got in enumerate(done))
    else:
        chunks = (screen(chunk.indices, chunk.samples, chunk.images)
                  for chunk in samples.chunks(CHUNK, progress=progress, desc=desc))
    paths, checks, gallery = [], [], {}
    ok = np.ones(len(samples), bool)
    for positions, chunk_checks, thumbs in chunks:
        for j, (i, c) in enumerate(zip(positions, chunk_checks)):
            if j in thumbs and len(gallery) < GALLERY:
                gallery[len(paths)] = thumbs[j]
            ok[i] = c.ok
            paths.append(samples.samples[i].path)
            checks.append(c)
    return summarise(paths, checks, gallery), ok


def screen(positions: np.ndarray, samples: Sequence, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list, dict[int, str]]:
    """One chunk's readable images: (their positions, their verdicts, thumbnails of the first GALLERY flagged)."""
    from tumorlens.inputcheck.check import check_samples

    checks = check_samples(samples, images)
    flagged = [j for j, c in enumerate(checks) if not c.ok][:GALLERY]
    return np.asarray(positions), checks, {j: thumbnail_png(images[j]) for j in flagged}


class ScreenWorker:
    """check_sample_set's work on a Ray worker: one chunk of samples, read there by their references;
    positions are within the chunk; with each sample's read facts (Sample.read_facts) for the caller's copy."""

    def __call__(self, samples: list) -> tuple[np.ndarray, list, dict[int, str], list]:
        from tumorlens.data.streaming import iter_chunks

        got = next(iter_chunks(samples, size=max(len(samples), 1)), None)  # one chunk: its readable images
        positions, checks, thumbs = screen(got.indices, got.samples, got.images) if got else (np.zeros(0, int), [], {})
        return positions, checks, thumbs, [s.read_facts() for s in samples]
