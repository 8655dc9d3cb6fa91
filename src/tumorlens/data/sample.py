"""The one record every data source produces and every later stage consumes.

A Sample is a reference plus metadata: its pixels are read when `sample.image` (or `.mask`) is
first asked for, through the bounded cache of lazy.py, so a dataset of any size costs only its
metadata until it is used. Samples built from arrays (synthetic data, tests) hold them as before.
A file that turns out to be damaged when first read raises UnreadableFile there, once; the sample
remembers why (`sample.error`) and `SampleSet.drop_unreadable()` moves it to `skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tumorlens.data.errors import UnreadableFile
from tumorlens.data.lazy import SliceRef, read_slice
from tumorlens.data.streaming import Chunk, iter_chunks  # noqa: F401 (Chunk re-exported)


class Sample:
    """One 2-D slice.

    image: float32 (H, W) grayscale, intensities as read (no normalisation yet); read on demand.
    label: class name, or None when the source has no labels.
    mask: bool (H, W) tumor mask, or None; read on demand with the image.
    patient_id: patient identifier as a string, or None.
    path: where the slice came from (file, or file plus slice index in meta).
    meta: anything else a source knows (split, slice_index, modality, ...); facts only the pixels
        tell (e.g. "color") are added when the pixels are first read.
    ref, shape, has_mask: for a lazy sample, where its pixels are, their (H, W) from the header,
        and whether the source has a mask for it.
    """

    __slots__ = ("label", "patient_id", "path", "meta", "ref", "error", "_image", "_mask", "_shape", "_has_mask",
                 "_packed_mask")

    def __init__(self, image: np.ndarray | None = None, label: str | None = None, mask: np.ndarray | None = None,
                 patient_id: str | None = None, path: str = "", meta: dict[str, Any] | None = None, *,
                 ref: SliceRef | None = None, shape: tuple[int, int] | None = None, has_mask: bool = False):
        self.label, self.patient_id, self.path = label, patient_id, path
        self.meta = {} if meta is None else meta
        self.ref, self.error = ref, None
        self._image = self._mask = self._packed_mask = None
        if image is None:
            if ref is None:
                raise ValueError(f"a Sample needs an image or a reference to one ({path})")
            self._shape, self._has_mask = (tuple(shape) if shape is not None else None), bool(has_mask)
            return
        self._set(np.asarray(image, dtype=np.float32), mask)

    def _set(self, image: np.ndarray, mask) -> None:
        if image.ndim != 2:
            raise ValueError(f"Sample image must be 2-D grayscale, got shape {image.shape} ({self.path})")
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != image.shape:
                raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape} ({self.path})")
        self._image, self._mask, self._shape, self._has_mask = image, mask, image.shape, mask is not None

    # -- pixels, on demand --------------------------------------------------------------------------
    def _read(self):
        if self.error is not None:
            raise UnreadableFile(self.error)
        try:
            got = read_slice(self.ref)
        except UnreadableFile as exc:
            self.error = str(exc)
            raise
        if got.image.ndim != 2:
            self.error = f"unexpected image shape {got.image.shape}"
            raise UnreadableFile(self.error)
        for k, v in got.meta.items():  # facts the pixels tell (colour...); the header's facts stay
            if k != "patient_id":  # a field of its own
                self.meta.setdefault(k, v)
        self._shape = got.image.shape
        return got

    @property
    def image(self) -> np.ndarray:
        """float32 (H, W); read-only when it comes from the shared cache (copy before changing it)."""
        return self._image if self._image is not None else self._read().image

    @image.setter
    def image(self, value) -> None:
        mask = self.mask if self._packed_mask is not None else self._mask
        self._packed_mask = None
        self._set(np.asarray(value, dtype=np.float32), mask)

    @property
    def mask(self) -> np.ndarray | None:
        if self._packed_mask is not None:
            return np.unpackbits(self._packed_mask, count=self._shape[0] * self._shape[1]).reshape(self._shape).view(bool)
        if self._image is not None or not self._has_mask:
            return self._mask
        return self._read().mask

    @mask.setter
    def mask(self, value) -> None:
        if value is not None and self.is_lazy:
            # A mask from elsewhere (the audit's segmenter gives one to every Kaggle slice): kept at
            # one bit a pixel, and the sample stays lazy. Setting it through the image would pin
            # every audited slice's pixels (float32) and mask for the whole audit.
            value = np.asarray(value).astype(bool)
            if value.shape != self.shape:
                raise ValueError(f"mask shape {value.shape} differs from image shape {self.shape} ({self.path})")
            self._packed_mask, self._has_mask = np.packbits(value, axis=None), True
            return
        self._packed_mask = None
        self._set(self.image, value)

    @property
    def is_lazy(self) -> bool:
        return self._image is None

    @property
    def has_mask(self) -> bool:
        """Whether a tumor mask exists, known without reading the pixels."""
        return self._has_mask

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W), from the header when the pixels have not been read."""
        return self._shape if self._shape is not None else self.image.shape

    # -- a read made elsewhere (a Ray worker reads a copy of this sample) ----------------------------
    def read_facts(self) -> tuple[dict[str, Any], str | None, tuple[int, int] | None]:
        """What reading the pixels taught this sample: (meta, error, shape); `learn` gives it to another copy."""
        return self.meta, self.error, self._shape

    def learn(self, facts: tuple[dict[str, Any], str | None, tuple[int, int] | None]) -> None:
        meta, error, shape = facts
        for k, v in meta.items():
            self.meta.setdefault(k, v)
        self.error = self.error or error
        self._shape = tuple(shape) if shape is not None else self._shape

    # -- names ---------------------------------------------------------------------------------------
    @property
    def split(self) -> str | None:
        return self.meta.get("split")

    @property
    def name(self) -> str:
        idx = self.meta.get("slice_index")
        base = Path(self.path).name
        return f"{base}#{idx}" if idx is not None else base

    @property
    def key(self) -> str:
        """The sample's path, plus '#index' for one slice of a volume or multi-frame file."""
        idx = self.meta.get("slice_index")
        return f"{self.path}#{idx}" if idx is not None else self.path

    def __repr__(self) -> str:
        where = "lazy" if self.is_lazy else "in memory"
        return f"Sample({self.name!r}, label={self.label!r}, shape={self._shape}, {where})"


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class SampleSet:
    """Samples of one dataset, plus every file that could not be read and why.

    skipped is shared by a set and its subsets (subset, by_split), so a file found damaged while
    a subset is read is reported with the whole dataset.
    """

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
        return bool(self.samples) and all(s.has_mask for s in self.samples)

    def has_patients(self) -> bool:
        return bool(self.samples) and all(s.patient_id is not None for s in self.samples)

    def subset(self, indices) -> "SampleSet":
        return SampleSet([self.samples[i] for i in indices], list(self.classes), self.root, self.kind, self.skipped)

    def by_split(self, split: str) -> "SampleSet":
        return self.subset([i for i, s in enumerate(self.samples) if s.split == split])

    # -- reading in chunks -----------------------------------------------------------------------------
    def chunks(self, size: int = 64, *, workers: int | None = None, progress: bool = False,
               desc: str = "reading") -> Iterator[Chunk]:
        """The set's pixels chunk by chunk (read by threads, the next chunk while the caller works on
        this one); a sample that cannot be read is left out of its chunk and remembered (sample.error).
        Call drop_unreadable() afterwards to remove those samples and list them in skipped."""
        return iter_chunks(self.samples, size, workers=workers, progress=progress, desc=desc)

    def drop_unreadable(self) -> list[SkippedFile]:
        """Remove samples whose pixels failed to read, record each file once in skipped; returns the new entries."""
        bad = [s for s in self.samples if s.error is not None]
        if not bad:
            return []
        self.samples = [s for s in self.samples if s.error is None]
        known = {k.path for k in self.skipped}
        new = []
        for s in bad:
            if s.path not in known:
                known.add(s.path)
                new.append(SkippedFile(s.path, s.error))
        self.skipped.extend(new)
        return new
