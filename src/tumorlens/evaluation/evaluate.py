"""`evaluate(model, samples, out)`: metrics, figures, predictions.csv and metrics.json, also on the
Testing subset that has no near twin in Training when the dataset has both splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError
from tumorlens.evaluation.figures import confusion_matrix_figure, reliability_figure
from tumorlens.evaluation.inference import calibrated, predict_logits, truth_indices
from tumorlens.evaluation.leakage import leakage_free_mask
from tumorlens.evaluation.metrics import classification_metrics
from tumorlens.inputcheck.summary import summarise
from tumorlens.models.checkpoint import TumorModel


def evaluate(model: TumorModel, samples: SampleSet, out: Path, split: str | None = "auto", batch_size: int = 64) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evaluated = _choose_split(samples, split)
    truth_indices(model, evaluated)  # unknown classes fail before any pixel is read
    checks: list = []
    logits = predict_logits(model, evaluated, batch_size, desc="evaluating", checks=checks)
    truth = truth_indices(model, evaluated)  # again: predict_logits drops files found damaged
    probs = calibrated(model, logits)
    classes = model.classes

    result = {
        "model": model.version,
        "data": samples.root,
        "split": evaluated.samples[0].split if evaluated.samples else None,
        "skipped_files": [vars(s) for s in samples.skipped],
        "all": classification_metrics(truth, probs, classes),
    }
    result["input_check"] = summarise([s.path for s in evaluated.samples], checks)
    result["all"]["ece_uncalibrated"] = classification_metrics(truth, calibrated(model, logits, 1.0), classes)["ece"]
    keep = leakage_free_mask(samples, evaluated)
    if keep is not None:
        result["leakage_free"] = classification_metrics(truth[keep], probs[keep], classes)
        result["near_twin_in_training"] = int((~keep).sum())

    confusion_matrix_figure(result["all"]["confusion_matrix"], classes, out / "confusion_matrix.png")
    reliability_figure(probs, truth, out / "reliability.png")
    table = pd.DataFrame(
        {
            "path": [s.path for s in evaluated.samples],
            "truth": [classes[t] for t in truth],
            "prediction": [classes[p] for p in probs.argmax(1)],
            "confidence": probs.max(1),
        }
    )
    for i, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, i]
    if keep is not None:
        table["near_twin_in_training"] = ~keep
    table["input_check_score"] = [c.score for c in checks]
    table["input_check_warning"] = [c.message() for c in checks]
    table.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def _choose_split(samples: SampleSet, split: str | None) -> SampleSet:
    """'auto': the Testing split when there is one, else everything."""
    splits = sorted({s.split for s in samples.samples if s.split})
    if split == "auto":
        split = "Testing" if "Testing" in splits else None
    if split is None:
        return samples
    if split not in splits:
        raise TumorlensError(f"{samples.root} has no split {split!r}; it has {splits or 'no splits'}")
    return samples.by_split(split)
