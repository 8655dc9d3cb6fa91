"""The input check every entry point uses: the cheap rules (rules.py), then the learned detector
(detector.py) on the bundled segmenter's features (features.py). It judges the image only, never
the model being run, so a foreign model's inputs are judged the same way."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from tumorlens.inputcheck.result import Finding, InputCheck
from tumorlens.inputcheck.rules import check_rules

LEARNED_CODE = "unlike_brain_mri"
_WARNED: set[str] = set()  # stale references already warned about (once per process)


def learned_message(score: float, threshold: float) -> str:
    return (f"this looks unlike the brain MRI slices the model was trained on (score {score:.2f}, threshold "
            f"{threshold:.2f}); results for it are not meaningful: check that it is an MRI slice of the brain")


def apply_score(check: InputCheck, score: float, threshold: float) -> InputCheck:
    """Record the learned detector's score on a rules verdict; above the threshold the class is withheld."""
    check.score, check.threshold = float(score), float(threshold)
    check.stats["learned_score"] = round(float(score), 4)
    if score > threshold:
        check.unlike_training = True
        check.findings.append(Finding(LEARNED_CODE, learned_message(score, threshold)))
    return check


def learned_scores(images: Sequence[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, float]:
    """(scores, threshold) of the learned detector for 2-D images; loads the shared extractor and reference."""
    from tumorlens.inputcheck.detector import shared_reference
    from tumorlens.inputcheck.features import shared_extractor

    ref, extract = shared_reference(), shared_extractor()
    if ref.extractor != extract.version and ref.extractor not in _WARNED:
        _WARNED.add(ref.extractor)
        warnings.warn(f"the input check's reference statistics were built with segmenter {ref.extractor}, but "
                      f"{extract.version} is installed: rebuild them (scripts/build_input_reference.py)", stacklevel=2)
    if not len(images):
        return np.zeros(0, np.float32), ref.threshold
    return ref.score(extract(images, batch_size)), ref.threshold


def score_checks(checks: Sequence[InputCheck], images: Sequence[np.ndarray], batch_size: int = 32) -> None:
    """Add the learned detector's verdict to rules verdicts (same order as images); refused images
    are not scored. Split from check_images so that the service can run it while the model works."""
    scored = [i for i, c in enumerate(checks) if not c.refuse]
    scores, threshold = learned_scores([images[i] for i in scored], batch_size)
    for i, s in zip(scored, scores):
        apply_score(checks[i], s, threshold)


def check_images(images: Sequence[np.ndarray], colour: float = 0.0, meta: dict | None = None,
                 batch_size: int = 32) -> list[InputCheck]:
    """One verdict per 2-D image (the learned features in batches); refused images are not scored."""
    checks = [check_rules(np.asarray(im, dtype=np.float32), colour, meta) for im in images]
    score_checks(checks, images, batch_size)
    return checks


def check_samples(samples: Sequence, images: Sequence[np.ndarray], batch_size: int = 32) -> list[InputCheck]:
    """Verdicts for dataset samples (tumorlens.data.sample.Sample) and their read pixels: each
    sample's own colour share and DICOM tags (sample.meta) go to the rules."""
    checks = [check_rules(np.asarray(im, dtype=np.float32), s.meta.get("colour_fraction", 0.0), s.meta)
              for s, im in zip(samples, images)]
    score_checks(checks, images, batch_size)
    return checks


def check_image(image: np.ndarray, colour: float = 0.0, meta: dict | None = None) -> InputCheck:
    """Is this a brain MRI slice of the kind tumorlens knows? colour: share of clearly coloured pixels
    of the file it came from; meta: DICOM modality/body_part where known."""
    return check_images([image], colour, meta)[0]
