"""Train/validation splits that do not leak: by patient whenever patient ids exist, else by groups
of near-duplicate slices.

Slices of one patient are near-identical neighbours; a split that puts one patient on both sides
measures recall of that patient, not generalisation. A set without patient ids (the Kaggle set) has
the same problem through its near twins: a stratified split of its Training folder put a near twin
of a training slice beside a quarter of the validation slices (benchmarks/honest_split.py). So:
- `train_val_split` is what callers should use: patient-grouped when ids exist, else grouped by
  near duplicates when the caller has the slices' perceptual hashes, else stratified.
- `near_duplicate_groups` joins slices within a Hamming threshold into connected components (a
  chain of near twins is one group), which `grouped_split` keeps on one side.
- `stratified_split` on a set that has patient ids warns (PatientLeakageWarning).
- `check_no_patient_overlap` raises PatientLeakageError naming the shared patients.
- `split_by_name` redraws a split from the name `train_val_split` gave it, and `paths_digest` is the
  fingerprint a training run records of its validation slices, so the split can be confirmed later.
All functions return index arrays into the given SampleSet and are deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from tumorlens.data.errors import DatasetError
from tumorlens.data.hash_index import pairs_within
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
    folds = _group_kfold(ds, _patients(ds), k, seed, "patients")
    for tr, va in folds:
        check_no_patient_overlap(ds, tr, va)
    return folds


def _group_kfold(ds: SampleSet, groups: np.ndarray, k: int, seed: int, what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    y = _labels(ds)
    n_groups = len(set(groups.tolist()))
    if k < 2 or k > n_groups:
        raise DatasetError(f"{ds.root or 'dataset'}: need 2 <= k <= number of {what} ({n_groups}), got k={k}")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer groups than folds; the folds are still valid.
        warnings.simplefilter("ignore", UserWarning)
        return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(len(ds)), y, groups)]


def near_duplicate_groups(hashes: np.ndarray, valid: np.ndarray, threshold: int) -> np.ndarray:
    """A group id per slice: the connected components of the graph whose edges join two slices
    within `threshold` bits of each other. A slice without a hash (blank, unreadable) is alone."""
    hashes, valid = np.asarray(hashes, dtype=np.uint64), np.asarray(valid, dtype=bool)
    idx = np.flatnonzero(valid)
    i, j, _ = pairs_within(hashes[idx], None, threshold)
    n = len(hashes)
    graph = coo_matrix((np.ones(len(i), np.int8), (idx[i], idx[j])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def grouped_split(ds: SampleSet, groups: np.ndarray, val_fraction: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices with every group on one side and class proportions kept as well as whole
    groups allow; the validation share is 1/round(1/val_fraction), as in patient_group_split."""
    _check_fraction(val_fraction)
    groups = np.asarray(groups)
    if len(groups) != len(ds):
        raise DatasetError(f"{len(groups)} group ids for {len(ds)} slices")
    return _group_kfold(ds, groups, max(2, int(round(1.0 / val_fraction))), seed, "groups")[0]


def stratified_kfold(ds: SampleSet, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k stratified folds by slice (for sets without patient ids)."""
    y = _labels(ds)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(len(ds)), y)]


def train_val_split(ds: SampleSet, val_fraction: float = 0.2, seed: int = 0, hashes: np.ndarray | None = None,
                    valid: np.ndarray | None = None, threshold: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The split to use by default, and its name: by patient when every slice has a patient id; else,
    given the slices' perceptual hashes (data.checks.hash_samples) and a Hamming threshold, by groups
    of near duplicates; else stratified by slice."""
    if ds.has_patients():
        return (*patient_group_split(ds, val_fraction, seed), "patient-grouped")
    if hashes is not None and threshold is not None:
        valid = np.ones(len(hashes), bool) if valid is None else valid
        groups = near_duplicate_groups(hashes, valid, threshold)
        return (*grouped_split(ds, groups, val_fraction, seed), _GROUPED_NAME.format(threshold))
    return (*stratified_split(ds, val_fraction, seed), "stratified")


_GROUPED_NAME = "near-duplicate-grouped (Hamming <= {})"


def split_by_name(ds: SampleSet, how: str, val_fraction: float, seed: int, hashes: np.ndarray | None = None,
                  valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, val) indices of `ds` split as the name that train_val_split returned says (a training
    run records it in its provenance), or None for a name not known here. A near-duplicate-grouped
    split needs the slices' hashes (data.checks.hash_samples); without them it is None as well."""
    if how == "stratified":
        return stratified_split(ds, val_fraction, seed)
    if how == "patient-grouped":
        return patient_group_split(ds, val_fraction, seed)
    grouped = re.fullmatch(re.escape(_GROUPED_NAME).replace(r"\{\}", r"(\d+)"), how or "")
    if grouped is None or hashes is None:
        return None
    valid = np.ones(len(hashes), bool) if valid is None else valid
    return grouped_split(ds, near_duplicate_groups(hashes, valid, int(grouped.group(1))), val_fraction, seed)


def needs_hashes(how: str) -> bool:
    """Whether split_by_name needs the slices' perceptual hashes to redraw a split of this name."""
    return (how or "").startswith(_GROUPED_NAME.split(" (")[0])


def paths_digest(samples: SampleSet, root: str | None = None) -> str:
    """The fingerprint of a set of slices that training records for its validation split: SHA-256 of
    the sorted paths, with the dataset's root written as `root` when given (training names paths as
    its command line named the data folder; another working folder gives the same files another prefix)."""
    def named(path: str) -> str:
        return root + path[len(samples.root):] if root is not None and path.startswith(samples.root) else path

    return hashlib.sha256("\n".join(sorted(named(s.path) for s in samples.samples)).encode()).hexdigest()[:16]


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
