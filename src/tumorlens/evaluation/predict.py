"""Predictions for arbitrary paths (files, folders, DICOM, NIfTI), unlabelled or not."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tumorlens.data.sample import SampleSet, SkippedFile
from tumorlens.evaluation.inference import calibrated, predict_logits
from tumorlens.models.loading import load_model


def read_paths(paths: Sequence[Path]) -> SampleSet:
    """Every readable slice under the given files and folders, labelled or not; unreadable files
    are listed in .skipped rather than stopping the run."""
    from tumorlens.data.errors import DatasetError
    from tumorlens.data.sources import open_dataset

    samples, skipped = [], []
    for path in paths:
        try:
            ds = open_dataset(path, allow_unlabeled=True, progress=len(paths) == 1)
        except DatasetError as exc:
            skipped.append(SkippedFile(str(path), str(exc)))
            continue
        samples += ds.samples
        skipped += ds.skipped
    if not samples:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise DatasetError(f"nothing to predict: no readable slice in the given paths ({reasons})")
    return SampleSet(samples, sorted({s.label for s in samples if s.label}), kind="paths", skipped=skipped)


def prediction_row(classes: Sequence[str], probs, check=None) -> dict:
    """One prediction as the CLI's JSON, the service and the Python API report it; with the input
    check's verdict (tumorlens.inputcheck.InputCheck) and, when it flags the image, a warning."""
    k = int(probs.argmax())
    row = {"class": classes[k], "confidence": float(probs[k]),
           "probabilities": {c: float(v) for c, v in zip(classes, probs)}}
    if check is not None:
        row["input_check"] = check.to_dict()
        if not check.ok:
            row["warning"] = check.message()
    return row


def predict_samples(model, samples: SampleSet, batch_size: int = 64) -> tuple[list[dict], list[dict]]:
    """Rows (image, path, class, confidence, probabilities, input_check[, warning]) for every readable
    sample, read chunk by chunk; the files found unreadable are returned beside them."""
    checks: list = []
    probs = calibrated(model, predict_logits(model, samples, batch_size, checks=checks))
    rows = [{"image": s.name, "path": s.path, **prediction_row(model.classes, p, c)}
            for s, p, c in zip(samples.samples, probs, checks)]
    return rows, [vars(s) for s in samples.skipped]


def predict_paths(model_path: Path, paths: Sequence[Path], batch_size: int = 64,
                  model_options: dict | None = None) -> tuple[list[dict], list[dict]]:
    """model_options: load_model's keywords for a foreign model (spec, trust_code, spec keys)."""
    model = load_model(model_path, **(model_options or {}))
    return predict_samples(model, read_paths(paths), batch_size)
