"""Classification metrics computed with scikit-learn, as one plain dict (JSON-ready)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from tumorlens.evaluation.calibration import expected_calibration_error


def classification_metrics(truth: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    truth = np.asarray(truth)
    pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    out = {
        "n": int(len(truth)),
        "accuracy": float(accuracy_score(truth, pred)) if len(truth) else float("nan"),
        "macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(truth, pred, labels=labels).tolist(),
        "ece": expected_calibration_error(probs, truth),
    }
    out["roc_auc_ovr"] = _roc_auc(truth, probs, classes)
    return out


def _roc_auc(truth: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """One-vs-rest ROC-AUC per class and macro; None where a class has no positives or negatives."""
    per_class = {}
    for i, c in enumerate(classes):
        positives = truth == i
        per_class[c] = float(roc_auc_score(positives, probs[:, i])) if 0 < positives.sum() < len(truth) else None
    valid = [v for v in per_class.values() if v is not None]
    return {"per_class": per_class, "macro": float(np.mean(valid)) if valid else None}
