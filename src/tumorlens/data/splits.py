"""Train/validation splits that do not leak: by patient whenever patient ids exist.

Slices of one patient are near-identical neighbours; a split that puts one patient on both sides
measures recall of that patient, not generalisation. So:
- `train_val_split` is what callers should use: patient-grouped when ids exist, else stratified.
- `stratified_split` on a set that has patient ids warns (PatientLeakageWarning).
- `check_no_patient_overlap` raises PatientLeakageError naming the shared patients.
All functions return index arrays into the given SampleSet and are deterministic for a seed.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from tumorlens.data.errors import DatasetError
from tumorlens.data.sample import SampleSet
from tumorlens.errors import TumorlensError


class PatientLeakageError(DatasetError):
    """A patient's slices fall on more than one side of a split."""


class PatientLeakageWarning(UserWarning):
    """A split ignores patient ids that the dataset has."""


def _labels(ds: SampleSet) -> np.ndarray:
    labels = ds.labels()
    if any(lab is None for lab in labels):
        raise DatasetError(f"{ds.root or 'dataset'}: some slices have no label; a stratified split needs labels")
    return np.array(labels)


def _patients(ds: SampleSet) -> np.ndarray:
    if not ds.has_patients():
        raise DatasetError(f"{ds.root or 'dataset'}: no patient ids on every slice; a patient split needs them")
    return np.array([s.patient_id for s in ds.samples])


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise TumorlensError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")


def stratified_split(ds: SampleSet, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices with class proportions kept; warns if the set has patient ids."""
    _check_fraction(val_fraction)
    y = _labels(ds)
    if ds.has_patients():
        warnings.warn(
            f"{ds.root or 'dataset'} has patient ids but this split is by slice: slices of one patient "
            "will land on both sides (use patient_group_split)",
            PatientLeakageWarning,
            stacklevel=2,
        )
    try:
        train, val = train_test_split(np.arange(len(ds)), test_size=val_fraction, stratify=y, random_state=seed)
    except ValueError as exc:  # e.g. a class with a single slice
        raise DatasetError(f"{ds.root or 'dataset'}: cannot stratify this split: {exc}") from None
    return np.sort(train), np.sort(val)


def patient_group_split(ds: SampleSet, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices with every patient on one side and class proportions kept as well as
    whole patients allow. The validation share is 1/round(1/val_fraction) of the patients
    (StratifiedGroupKFold's first fold), so 0.2 gives one fold of five."""
    _check_fraction(val_fraction)
    n_splits = max(2, int(round(1.0 / val_fraction)))
    train, val = patient_kfold(ds, k=n_splits, seed=seed)[0]
    return train, val


def patient_kfold(ds: SampleSet, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, val) folds; each patient is in exactly one validation fold."""
    y, groups = _labels(ds), _patients(ds)
    n_patients = len(set(groups))
    if k < 2 or k > n_patients:
        raise DatasetError(f"{ds.root or 'dataset'}: need 2 <= k <= number of patients ({n_patients}), got k={k}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer patients than folds; the folds are still valid.
        warnings.simplefilter("ignore", UserWarning)
        folds = [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(len(ds)), y, groups)]
    for tr, va in folds:
        check_no_patient_overlap(ds, tr, va)
    return folds


def stratified_kfold(ds: SampleSet, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k stratified folds by slice (for sets without patient ids)."""
    y = _labels(ds)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(len(ds)), y)]


def train_val_split(ds: SampleSet, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The split to use by default: by patient when every slice has a patient id, else stratified."""
    if ds.has_patients():
        return patient_group_split(ds, val_fraction, seed)
    return stratified_split(ds, val_fraction, seed)


def check_no_patient_overlap(ds: SampleSet, *index_sets) -> None:
    """Raise PatientLeakageError if any patient id occurs in more than one of the index sets.

    Slices without a patient id cannot be checked and are ignored.
    """
    seen: dict[str, int] = {}
    shared = set()
    for part, idx in enumerate(index_sets):
        for i in np.asarray(idx, dtype=np.int64):
            pid = ds.samples[i].patient_id
            if pid is None:
                continue
            if seen.setdefault(pid, part) != part:
                shared.add(pid)
    if shared:
        names = ", ".join(sorted(shared)[:5]) + (" ..." if len(shared) > 5 else "")
        raise PatientLeakageError(f"{len(shared)} patient(s) appear in more than one split: {names}")


def split_patient_overlap(ds: SampleSet) -> dict[str, list[str]]:
    """Patients whose slices sit in more than one of the dataset's own splits (meta['split'])."""
    where: dict[str, set] = {}
    for s in ds.samples:
        if s.patient_id is not None and s.split is not None:
            where.setdefault(s.patient_id, set()).add(s.split)
    return {pid: sorted(splits) for pid, splits in where.items() if len(splits) > 1}
