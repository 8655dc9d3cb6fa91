"""Catch the mistakes real users make in a foreign model's spec, with the figures, before the audit.

On a small labelled, class-mixed sample of the audited images:
- class order: if a permutation of the declared class list explains the predictions far better than
  the declared order (the best one-to-one matching of outputs to classes, scipy's
  linear_sum_assignment on the confusion matrix), the list looks permuted;
- preprocessing: if another normalisation or resize filter gives a markedly higher accuracy than
  the declared one, the declared one looks wrong.
It only warns: the spec is the user's statement and is never changed silently.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.spec import ModelSpecError

SAMPLE_N = 64  # images: enough for accuracy differences of 0.15-0.2 to stand out of the noise
GAIN_WARN = 0.15  # accuracy points an alternative must gain to be worth a warning
ALTERNATIVE_NORMALIZATIONS = ("unit", "minus1to1", "imagenet", "zscore")
ALTERNATIVE_RESIZES = ("nearest", "bilinear", "area")


def _sample(truth: np.ndarray, n: int, seed: int) -> np.ndarray:
    idx = np.random.default_rng(seed).permutation(len(truth))[:n]
    return np.sort(idx)


def _accuracy(model: TumorModel, images: list[np.ndarray], truth: np.ndarray) -> tuple[float, np.ndarray]:
    pred = model.predict_images(images).argmax(1)
    return float(np.mean(pred == truth)), pred


def _variant(model: TumorModel, **spec_changes) -> TumorModel:
    """The same network fed another way (normalisation or resize filter)."""
    from tumorlens.models.spec import ModelSpec
    from tumorlens.models.spec_input import SpecInput

    spec = ModelSpec(**model.source["spec"]).replace(**spec_changes)
    net = SpecInput(model.net.model, spec, model.net.channels).eval()
    recipe = dataclasses.replace(model.recipe, interpolation=spec.resize)
    return dataclasses.replace(model, net=net, recipe=recipe)


def permutation_warning(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict | None:
    from scipy.optimize import linear_sum_assignment

    k = len(classes)
    confusion = np.zeros((k, k), np.int64)  # rows: model output, columns: true class
    np.add.at(confusion, (pred, truth), 1)
    rows, cols = linear_sum_assignment(-confusion)
    declared = float(np.trace(confusion)) / len(truth)
    best = float(confusion[rows, cols].sum()) / len(truth)
    if best - declared < GAIN_WARN:
        return None
    moved = [(int(r), classes[c]) for r, c in zip(rows, cols) if r != c]
    said = ", ".join(f"output {r} ({classes[r]}) behaves like {name}" for r, name in moved)
    return {"kind": "class_order", "declared_accuracy": declared, "best_accuracy": best,
            "best_order": [classes[c] for c in cols[np.argsort(rows)]],
            "message": (f"your class list looks permuted: {said} (accuracy on {len(truth)} images: declared order "
                        f"{declared:.2f}, matched order {best:.2f}); check `classes` in the model spec")}


def preprocessing_warnings(model: TumorModel, images, truth, declared: float) -> list[dict]:
    spec = model.source["spec"]
    out = []
    for key, options in (("normalize", ALTERNATIVE_NORMALIZATIONS), ("resize", ALTERNATIVE_RESIZES)):
        scores = {spec[key]: declared}
        for option in options:
            if option not in scores:
                try:
                    variant = _variant(model, **{key: option})
                except ModelSpecError:  # not possible for this model (ImageNet statistics on one channel)
                    continue
                scores[option] = _accuracy(variant, images, truth)[0]
        best = max(scores, key=scores.get)
        if scores[best] - declared >= GAIN_WARN:
            out.append({"kind": key, "declared": spec[key], "declared_accuracy": declared, "best": best,
                        "accuracies": scores,
                        "message": (f"{key} = {best}: accuracy {scores[best]:.2f}, declared {spec[key]}: {declared:.2f} "
                                    f"(on {len(truth)} images); check `{key}` in the model spec")})
    return out


def check_spec(model: TumorModel, samples, truth: np.ndarray, seed: int = 0) -> dict:
    """Warnings about the declared spec of a foreign model on a few of `samples` (a SampleSet with
    labels `truth`, as class indices); {} for a tumorlens checkpoint."""
    if not model.source or "spec" not in model.source or not hasattr(model.net, "model"):
        return {}
    idx = _sample(truth, SAMPLE_N, seed)
    images, truth = [samples.samples[i].image for i in idx], truth[idx]
    declared, pred = _accuracy(model, images, truth)
    warnings = []
    perm = permutation_warning(truth, pred, model.classes)
    if perm:
        warnings.append(perm)
    warnings += preprocessing_warnings(model, images, truth, declared)
    return {"n": len(truth), "declared_accuracy": declared, "warnings": warnings}
