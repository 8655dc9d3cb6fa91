"""Distillation across the intervention: the student sees the edited view (outside the brain
randomised, tumor removed, acquisition shifted) and learns the teacher's soft prediction on the
clean view.

Why: an accurate teacher may have learned a shortcut (the old default read the outside of the
brain). The student never sees the cue the teacher used, only its knowledge of the classes, so the
shortcut cannot pass. A tumor-removed view's target stays the tumor-free class (one-hot): the
teacher never saw that view and its prediction would name the tumor that is gone.

The teacher's predictions are computed once, before training, on each training slice as the
teacher's own recipe reads it (any format tumorlens loads), so a step costs no teacher pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError


def teacher_targets(teacher: str, samples: SampleSet, classes: list[str], temperature: float) -> np.ndarray:
    """(N, C) float32: the teacher's calibrated probabilities on each readable sample, softened at
    `temperature` (softmax(log p / T)), columns in `classes` order."""
    from tumorlens.models.class_names import canonical_classes
    from tumorlens.models.loading import load_model

    model = load_model(teacher)
    theirs, ours = canonical_classes(model.classes), canonical_classes(classes)
    missing = [c for c, k in zip(classes, ours) if k not in theirs]
    if missing:
        raise TumorlensError(f"the teacher {teacher} has no output for {', '.join(missing)} "
                             f"(its classes: {', '.join(model.classes)}); distil from a model with the same classes")
    columns = [theirs.index(k) for k in ours]
    parts = [model.predict_images(chunk.images) for chunk in
             samples.chunks(64, progress=True, desc="teacher predictions")]
    probs = np.concatenate(parts)[:, columns] if parts else np.zeros((0, len(classes)))
    logp = np.log(np.clip(probs, 1e-8, None)) / temperature
    soft = np.exp(logp - logp.max(axis=1, keepdims=True))
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def check_distill(weight: float, temperature: float) -> None:
    if not 0 < weight <= 1:
        raise TumorlensError(f"--distill-weight must lie in (0, 1], got {weight}")
    if temperature <= 0:
        raise TumorlensError(f"--distill-temperature must be positive, got {temperature}")


class DistillationLoss(nn.Module):
    """(1 - weight) * hard loss + weight * T^2 * cross-entropy between the soft target and the
    student at temperature T (Hinton et al. 2015; T^2 keeps the soft term's gradients on the hard
    term's scale). Without soft targets (validation) it is the hard loss alone."""

    def __init__(self, hard: nn.Module, weight: float, temperature: float):
        super().__init__()
        check_distill(weight, temperature)
        self.hard, self.weight, self.temperature = hard, weight, temperature

    def forward(self, logits: torch.Tensor, target: torch.Tensor, soft: torch.Tensor | None = None) -> torch.Tensor:
        hard = self.hard(logits, target)
        if soft is None:
            return hard
        t = self.temperature
        soft_ce = -(soft * F.log_softmax(logits / t, dim=1)).sum(dim=1).mean() * t * t
        return (1 - self.weight) * hard + self.weight * soft_ce
