"""Batched prediction over a SampleSet with a progress bar."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.softmax import temperature_softmax


def predict_logits(model: TumorModel, samples: SampleSet, batch_size: int = 64, desc: str = "predicting",
                   checks: list | None = None) -> np.ndarray:
    """Uncalibrated logits (N, C); pixels are read and preprocessed chunk by chunk so memory stays flat.

    A file found damaged only now is left out: removed from `samples` and listed in its skipped
    (SampleSet.drop_unreadable), so take labels from `samples` after this call.
    checks: a list to receive the input check's verdict (tumorlens.inputcheck) of every image kept,
    from the same read of the pixels."""
    chunks = []
    for chunk in samples.chunks(batch_size, progress=True, desc=desc):
        if chunk.images:
            chunks.append(model.logits(model.prepare(chunk.images), batch_size).numpy())
            if checks is not None:
                from tumorlens.inputcheck.check import check_samples

                checks.extend(check_samples(chunk.samples, chunk.images))
    for skip in samples.drop_unreadable():
        tqdm.write(f"skipped {skip.path}: {skip.reason}")
    return np.concatenate(chunks) if chunks else np.empty((0, model.num_classes), dtype=np.float32)


def calibrated(model: TumorModel, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """Softmax of logits / T, with the model's fitted temperature unless one is given."""
    t = model.temperature if temperature is None else temperature
    return temperature_softmax(logits, t)


def truth_indices(model: TumorModel, samples: SampleSet) -> np.ndarray:
    """Labels as the model's class indices; a class the model does not know is a clear error."""
    index = {c: i for i, c in enumerate(model.classes)}
    missing = sum(s.label is None for s in samples.samples)
    if missing:
        raise TumorlensError(f"{samples.root}: {missing} image(s) have no label; scoring a model needs labelled images")
    unknown = sorted({s.label for s in samples.samples if s.label not in index})
    if unknown:
        raise TumorlensError(
            f"dataset classes {unknown} are not classes of this model ({model.classes}); use --class-map to rename them"
        )
    return np.array([index[s.label] for s in samples.samples], dtype=np.int64)
