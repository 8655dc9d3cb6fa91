"""Train/validation splits: stratified by class, and grouped by patient whenever ids exist
(slices of one patient are near-identical neighbours, so any other split leaks)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

from tumorlens.data.sample import SampleSet


class PatientLeakError(ValueError):
    """A patient appears in more than one split."""


def _labels(samples: SampleSet) -> np.ndarray:
    if any(s.label is None for s in samples.samples):
        raise ValueError(f"{samples.root}: splitting needs a label on every sample")
    return samples.label_indices()


def _patients(samples: SampleSet) -> np.ndarray:
    if not samples.has_patients():
        raise ValueError(f"{samples.root}: a patient-grouped split needs a patient id on every sample")
    return np.array([s.patient_id for s in samples.samples])


def stratified_split(samples: SampleSet, val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), class proportions kept in both."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    y = _labels(samples)
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(y)), y))
    return np.sort(train), np.sort(val)


def patient_kfold(samples: SampleSet, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds, each patient's slices all in one fold, class balance kept as far as groups allow."""
    y, groups = _labels(samples), _patients(samples)
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"{samples.root}: {len(np.unique(groups))} patients cannot fill {n_splits} folds")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out = [(np.sort(tr), np.sort(va)) for tr, va in folds.split(np.zeros(len(y)), y, groups)]
    for tr, va in out:
        assert_no_patient_overlap(samples, tr, va)
    return out


def patient_group_split(samples: SampleSet, val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) with no patient on both sides: one fold of
    round(1 / val_fraction) patient-grouped stratified folds."""
    n_splits = max(2, int(round(1 / val_fraction)))
    return patient_kfold(samples, n_splits=n_splits, seed=seed)[0]


def assert_no_patient_overlap(samples: SampleSet, *index_sets: np.ndarray) -> None:
    seen: dict[str, int] = {}
    for k, idx in enumerate(index_sets):
        for i in idx:
            pid = samples.samples[i].patient_id
            if pid is None:
                continue
            if seen.setdefault(pid, k) != k:
                raise PatientLeakError(f"patient {pid} is in split {seen[pid]} and split {k}")
