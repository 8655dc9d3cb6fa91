"""The one record every data source produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Sample:
    """One 2-D slice.

    image: float32 (H, W) grayscale, intensities as read (no normalisation yet).
    label: class name, or None when the source has no labels.
    mask: bool (H, W) tumor mask, or None.
    patient_id: patient identifier as a string, or None.
    path: where the slice came from (file, or file plus slice index in meta).
    meta: anything else a source knows (split, slice_index, modality, ...).
    """

    image: np.ndarray
    label: str | None = None
    mask: np.ndarray | None = None
    patient_id: str | None = None
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        if self.image.ndim != 2:
            raise ValueError(f"Sample image must be 2-D grayscale, got shape {self.image.shape} ({self.path})")
        if self.mask is not None:
            self.mask = np.asarray(self.mask).astype(bool)
            if self.mask.shape != self.image.shape:
                raise ValueError(
                    f"mask shape {self.mask.shape} differs from image shape {self.image.shape} ({self.path})"
                )

    @property
    def split(self) -> str | None:
        return self.meta.get("split")

    @property
    def name(self) -> str:
        idx = self.meta.get("slice_index")
        base = Path(self.path).name
        return f"{base}#{idx}" if idx is not None else base


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class SampleSet:
    """Samples read from one dataset, plus every file that could not be read and why."""

    samples: list[Sample]
    classes: list[str]
    root: str = ""
    kind: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> list[str | None]:
        return [s.label for s in self.samples]

    def label_indices(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[s.label] for s in self.samples], dtype=np.int64)

    def has_masks(self) -> bool:
        return bool(self.samples) and all(s.mask is not None for s in self.samples)

    def has_patients(self) -> bool:
        return bool(self.samples) and all(s.patient_id is not None for s in self.samples)

    def subset(self, indices) -> "SampleSet":
        return SampleSet([self.samples[i] for i in indices], list(self.classes), self.root, self.kind, list(self.skipped))

    def by_split(self, split: str) -> "SampleSet":
        return self.subset([i for i, s in enumerate(self.samples) if s.split == split])
