"""Splits: stratified, patient-grouped, k-fold; patients never on two sides."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from tumorlens.data.sample import Sample, SampleSet
from tumorlens.data.splits import (
    PatientLeakageError,
    PatientLeakageWarning,
    check_no_patient_overlap,
    patient_group_split,
    patient_kfold,
    split_patient_overlap,
    stratified_split,
    train_val_split,
)
from tumorlens.data.synthetic import make_phantoms


def _tiny_set(n=100, patients=True) -> SampleSet:
    img = np.zeros((4, 4), np.float32)
    classes = ["a", "b", "c", "d"]
    samples = [
        Sample(img, classes[i % 4], patient_id=f"p{i % 4}-{i // 20}" if patients else None, path=f"{i}.png")
        for i in range(n)
    ]
    return SampleSet(samples, classes)


def test_stratified_split_keeps_class_shares_and_is_deterministic():
    ds = _tiny_set(200, patients=False)
    tr, va = stratified_split(ds, 0.25, seed=1)
    assert len(va) == 50 and len(tr) == 150 and not set(tr) & set(va)
    assert all(v in (12, 13) for v in Counter(ds.labels()[i] for i in va).values())
    tr2, va2 = stratified_split(ds, 0.25, seed=1)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(ds, 0.25, seed=2)[1])


def test_slice_split_of_a_patient_set_warns():
    ds = _tiny_set()
    with pytest.warns(PatientLeakageWarning, match="patient"):
        stratified_split(ds, 0.2)


def test_patient_split_and_folds_never_share_a_patient():
    ds = make_phantoms(240, size=32, seed=0, slices_per_patient=6)  # 40 patients, 10 per class
    tr, va = patient_group_split(ds, 0.2, seed=0)
    check_no_patient_overlap(ds, tr, va)
    assert len(tr) + len(va) == len(ds) and 0.1 < len(va) / len(ds) < 0.3
    assert set(ds.labels()[i] for i in va) == set(ds.classes)  # stratified by class too
    folds = patient_kfold(ds, k=5, seed=0)
    all_val = np.concatenate([va for _, va in folds])
    assert sorted(all_val) == list(range(len(ds)))  # every slice validated exactly once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(train_val_split(ds, 0.2, seed=0)[1], va)  # default is by patient


def test_overlap_check_names_the_shared_patients():
    ds = _tiny_set()
    tr, va = np.arange(0, 60), np.arange(50, 100)
    with pytest.raises(PatientLeakageError, match="patient") as err:
        check_no_patient_overlap(ds, tr, va)
    assert "p" in str(err.value)
    for s, split in zip(ds.samples, ["Training"] * 50 + ["Testing"] * 50):
        s.meta["split"] = split
    # Patients p*-2 (slices 40-59) straddle the boundary; move one more patient across.
    assert sorted(split_patient_overlap(ds)) == ["p0-2", "p1-2", "p2-2", "p3-2"]
    ds.samples[99].patient_id = ds.samples[0].patient_id
    assert split_patient_overlap(ds)["p0-0"] == ["Testing", "Training"]


def test_patient_split_needs_patient_ids():
    with pytest.raises(ValueError, match="patient ids"):
        patient_group_split(_tiny_set(patients=False))
