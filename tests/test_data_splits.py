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
    grouped_split,
    near_duplicate_groups,
    patient_group_split,
    paths_digest,
    patient_kfold,
    split_by_name,
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


def _twin_set(seed=0):
    """200 slices without patient ids; slices 0-119 come in 60 near-twin pairs (2 bits apart, same
    label), as the Kaggle Training folder's re-encoded copies do; the rest are unrelated."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, size=140, dtype=np.uint64)
    hashes = np.concatenate([np.repeat(base[:60], 2), base[60:]])
    hashes[1:120:2] ^= np.uint64(0b101)  # the second of each pair differs in 2 bits
    labels = np.concatenate([np.repeat(np.arange(60) % 4, 2), np.arange(80) % 4])
    classes = ["a", "b", "c", "d"]
    img = np.zeros((4, 4), np.float32)
    ds = SampleSet([Sample(img, classes[k], path=f"{i}.png") for i, k in enumerate(labels)], classes)
    return ds, hashes


def test_near_duplicate_groups_join_chains_of_twins():
    x = np.uint64(0x0123456789ABCDEF)
    chain = np.array([x, x ^ np.uint64(0b11), x ^ np.uint64(0b1111), ~x], dtype=np.uint64)  # a-b 2, b-c 2, a-c 4 bits
    valid = np.array([True, True, True, True])
    groups = near_duplicate_groups(chain, valid, threshold=2)
    assert groups[0] == groups[1] == groups[2] != groups[3]
    valid[1] = False  # without its hash the middle slice is alone, and the chain breaks
    groups = near_duplicate_groups(chain, valid, threshold=2)
    assert len(set(groups.tolist())) == 4


def test_grouped_split_keeps_near_twins_on_one_side_where_a_slice_split_does_not():
    ds, hashes = _twin_set()
    groups = near_duplicate_groups(hashes, np.ones(len(hashes), bool), threshold=2)
    pairs = [(2 * k, 2 * k + 1) for k in range(60)]

    def split_twins(val):
        val = set(val.tolist())
        return sum((a in val) != (b in val) for a, b in pairs)

    tr, va = grouped_split(ds, groups, 0.2, seed=0)
    assert split_twins(va) == 0 and len(tr) + len(va) == len(ds)
    assert 0.15 < len(va) / len(ds) < 0.25 and set(ds.labels()[i] for i in va) == set(ds.classes)
    assert split_twins(stratified_split(ds, 0.2, seed=0)[1]) > 10  # the slice split separates many pairs
    tr_d, va_d, how = train_val_split(ds, 0.2, 0, hashes=hashes, threshold=2)
    np.testing.assert_array_equal(va_d, va)
    assert how == "near-duplicate-grouped (Hamming <= 2)"
    assert train_val_split(ds, 0.2, 0)[2] == "stratified"  # without hashes: by slice
    with pytest.raises(Exception, match="group ids for"):
        grouped_split(ds, groups[:10], 0.2)


def test_a_recorded_split_is_redrawn_from_its_name_and_confirmed_by_its_paths():
    """The monitoring reference and the benchmarks score a model on the validation slices its
    training drew: the split's recorded name and digest must bring back exactly those slices."""
    ds, hashes = _twin_set()
    for data, kwargs in [(ds, {"hashes": hashes, "threshold": 2}), (ds, {}), (_tiny_set(), {})]:
        tr, va, how = train_val_split(data, 0.2, 3, **kwargs)
        again = split_by_name(data, how, 0.2, 3, hashes if kwargs else None)
        np.testing.assert_array_equal(again[1], va)
        np.testing.assert_array_equal(again[0], tr)
        assert paths_digest(data.subset(again[1])) == paths_digest(data.subset(va))
    assert split_by_name(ds, "near-duplicate-grouped (Hamming <= 2)", 0.2, 3) is None  # no hashes given
    assert split_by_name(ds, "by scanner", 0.2, 3) is None
    assert paths_digest(ds.subset(va)) != paths_digest(ds.subset(tr))
