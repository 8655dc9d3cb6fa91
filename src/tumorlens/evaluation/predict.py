"""Predictions for arbitrary paths (files, folders, DICOM, NIfTI), unlabelled or not."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tumorlens.evaluation.inference import calibrated, predict_logits
from tumorlens.models.checkpoint import load_model


def predict_paths(model_path: Path, paths: Sequence[Path], batch_size: int = 64) -> tuple[list[dict], list[dict]]:
    from tumorlens.data.sources import read_paths

    model = load_model(model_path)
    samples = read_paths(paths)
    probs = calibrated(model, predict_logits(model, samples, batch_size))
    rows = []
    for s, p in zip(samples.samples, probs):
        k = int(p.argmax())
        rows.append(
            {
                "image": s.name,
                "path": s.path,
                "class": model.classes[k],
                "confidence": float(p[k]),
                "probabilities": {c: float(v) for c, v in zip(model.classes, p)},
            }
        )
    return rows, [vars(s) for s in samples.skipped]
