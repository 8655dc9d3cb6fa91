"""Figures people would rather look at than read: confusion matrix and reliability diagram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from tumorlens.evaluation.calibration import expected_calibration_error, reliability_bins  # noqa: E402


def confusion_matrix_figure(matrix, classes: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reliability_figure(probs: np.ndarray, truth: np.ndarray, path: Path, n_bins: int = 15, title: str = "Reliability") -> Path:
    b = reliability_bins(probs, truth, n_bins)
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    used = b["count"] > 0
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.bar(centers[used], b["accuracy"][used], width=1 / n_bins, edgecolor="k", alpha=0.7, label="accuracy in bin")
    ax.plot(b["confidence"][used], b["accuracy"][used], "o", color="C3", ms=4, label="mean confidence")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {expected_calibration_error(probs, truth, n_bins):.3f})")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
