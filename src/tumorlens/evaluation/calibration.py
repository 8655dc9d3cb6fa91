"""Calibration: expected calibration error, reliability bins, and temperature scaling."""

from __future__ import annotations

import numpy as np
import torch


def reliability_bins(probs: np.ndarray, truth: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (top-1 label)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count}


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): count-weighted |accuracy - confidence| over equal-width bins.

    Computed here in a few lines because scikit-learn has no multi-class ECE and torchmetrics'
    version needs tensors and a task object for one number.
    """
    b = reliability_bins(probs, truth, n_bins)
    used = b["count"] > 0
    if not used.any():
        return float("nan")
    gap = np.abs(b["accuracy"][used] - b["confidence"][used])
    return float((gap * b["count"][used]).sum() / b["count"][used].sum())


def fit_temperature(logits: np.ndarray, truth: np.ndarray, max_iter: int = 200) -> float:
    """One scalar T minimising validation NLL of softmax(logits / T) (temperature scaling)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(truth, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T so T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and 0.05 < t < 20 else 1.0
