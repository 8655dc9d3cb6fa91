"""Losses for imbalanced classes: weighted cross-entropy with label smoothing, and focal loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from tumorlens.errors import TumorlensError


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (sklearn's 'balanced'); a class absent from training gets weight 1."""
    present = np.unique(labels)
    weights = np.ones(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights)


class FocalLoss(nn.Module):
    """Multi-class softmax focal loss (Lin et al. 2017).

    Written here because torch and torchvision only ship the binary sigmoid form
    (torchvision.ops.sigmoid_focal_loss); this is the few lines that form needs for softmax.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, weight=self.weight, reduction="none", label_smoothing=self.label_smoothing)
        p_true = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return ((1 - p_true) ** self.gamma * ce).mean()


def make_loss(kind: str, class_weights: torch.Tensor | None, label_smoothing: float, gamma: float = 2.0) -> nn.Module:
    if kind == "ce":
        return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
    if kind == "focal":
        return FocalLoss(gamma=gamma, weight=class_weights, label_smoothing=label_smoothing)
    raise TumorlensError(f"unknown loss {kind!r}; choose 'ce' or 'focal'")
