"""The reference profile: the monitored features of the model's own validation slices, stored in the
checkpoint under REFERENCE_KEY (a checkpoint without it loads as before; the service then has no
reference unless `serve --reference DATASET` computes one at start-up)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tumorlens.models.checkpoint import add_to_checkpoint, read_checkpoint
from tumorlens.monitoring.features import NUMERIC

REFERENCE_KEY = "monitoring_reference"


@dataclass
class ReferenceProfile:
    """Feature values per slice (lists, so a checkpoint stays plain data), class counts, the share
    flagged by the input check, and accuracy (measured, labels known) beside its label-free estimate."""

    source: str  # what the slices were, e.g. "brain-tumor-mri Training, validation split (seed 0, 10 %)"
    n: int
    features: dict[str, list[float]]
    class_counts: dict[str, int]
    flagged: int  # slices the input check did not pass
    accuracy: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def expected_accuracy(self) -> float | None:
        conf = self.values("confidence")
        return float(conf.mean()) if len(conf) else None

    def values(self, name: str) -> np.ndarray:
        return np.asarray([v for v in self.features.get(name, []) if v is not None], dtype=np.float64)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ReferenceProfile:
        return cls(source=str(d["source"]), n=int(d["n"]), features={k: list(v) for k, v in d["features"].items()},
                   class_counts={k: int(v) for k, v in d["class_counts"].items()}, flagged=int(d["flagged"]),
                   accuracy=d.get("accuracy"), notes=list(d.get("notes", [])))

    def summary(self) -> dict:
        """What a report shows about the reference (no per-slice values)."""
        return {"source": self.source, "n": self.n, "accuracy": self.accuracy,
                "expected_accuracy": self.expected_accuracy, "class_counts": self.class_counts,
                "flagged_share": self.flagged / self.n if self.n else None}


def profile_from_rows(rows: Sequence[Mapping], classes: Sequence[str], source: str,
                      truth: Sequence[str] | None = None) -> ReferenceProfile:
    """A profile from per-slice rows shaped as the audit trail keeps them: predicted_class,
    confidence, status, features. truth: the true class of each row, for the measured accuracy."""
    features = {name: [] for name in NUMERIC}
    for row in rows:
        f = {**(row.get("features") or {}), "confidence": row.get("confidence")}
        for name in NUMERIC:
            features[name].append(f.get(name))
    counts = {c: 0 for c in classes}
    for row in rows:
        if row.get("predicted_class") in counts:
            counts[row["predicted_class"]] += 1
    flagged = sum(1 for row in rows if is_flagged(row))
    accuracy = None
    if truth is not None and len(rows):
        accuracy = float(np.mean([r.get("predicted_class") == t for r, t in zip(rows, truth)]))
    return ReferenceProfile(source, len(rows), features, counts, flagged, accuracy)


def is_flagged(row: Mapping) -> bool:
    """The input check did not pass this slice (its verdict when recorded, else the answer's status)."""
    ok = (row.get("features") or {}).get("check_ok")
    if ok is not None:
        return not ok
    return row.get("status") in ("out_of_distribution", "refused")


def stored_reference(path: str | Path) -> ReferenceProfile | None:
    """The profile stored in a tumorlens checkpoint, or None (an older checkpoint, or another format)."""
    try:
        payload = read_checkpoint(path)
    except Exception:  # noqa: BLE001 - a foreign model file: it simply has no stored profile
        return None
    found = payload.get(REFERENCE_KEY)
    return ReferenceProfile.from_dict(found) if found else None


def store_reference(path: str | Path, profile: ReferenceProfile) -> Path:
    """Write the profile into the checkpoint (the file's version hash changes with it)."""
    return add_to_checkpoint(path, REFERENCE_KEY, profile.to_dict())
