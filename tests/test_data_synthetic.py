"""Phantoms: exact, consistent region masks; class-specific tumors; shortcuts only outside the brain."""

from __future__ import annotations

import numpy as np
import pytest

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms


def test_same_seed_same_pixels_other_seed_other_pixels():
    a = make_phantoms(6, seed=3, shortcut="marker")
    b = make_phantoms(6, seed=3, shortcut="marker")
    c = make_phantoms(6, seed=4, shortcut="marker")
    for x, y in zip(a.samples, b.samples):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.mask, y.mask)
    assert not np.array_equal(a.samples[0].image, c.samples[0].image)
    # Slice i does not depend on how many slices were asked for.
    np.testing.assert_array_equal(make_phantoms(2, seed=3, shortcut="marker").samples[1].image, a.samples[1].image)


def test_regions_partition_the_image_and_tumors_sit_in_the_brain():
    ds = make_phantoms(12, size=96, seed=1)
    assert ds.classes == ["glioma", "meningioma", "notumor", "pituitary"] and ds.has_masks()
    for s in ds.samples:
        brain, skull, head, bg = (s.meta[k] for k in ("brain_mask", "skull_mask", "head_mask", "background_mask"))
        assert s.image.shape == (96, 96) and s.image.dtype == np.float32
        assert not (brain & skull).any() and np.array_equal(brain | skull, head) and np.array_equal(~head, bg)
        assert not (s.mask & ~brain).any()
        if s.label == "notumor":
            assert not s.mask.any()
        else:
            assert s.mask.sum() > 10
            # Tumors are brighter than the brain they sit in (all three types enhance).
            assert s.image[s.mask].mean() > np.median(s.image[brain & ~s.mask])
        # Head, skull and brain are really distinct in the pixels, not only in the masks.
        assert s.image[bg].mean() < 0.1 < s.image[brain].mean()


def test_class_specific_tumor_positions():
    ds = make_phantoms(40, size=96, seed=2)
    def centre(s):
        ys, xs = np.nonzero(s.mask)
        by, bx = np.nonzero(s.meta["brain_mask"])
        return (ys.mean() - by.mean()) / 96, abs(xs.mean() - bx.mean()) / 96, s.mask.sum()
    pit = np.array([centre(s) for s in ds.samples if s.label == "pituitary"])
    glio = np.array([centre(s) for s in ds.samples if s.label == "glioma"])
    men = np.array([centre(s) for s in ds.samples if s.label == "meningioma"])
    assert (pit[:, 0] > 0.05).all() and (pit[:, 1] < 0.05).all()  # below centre, on the midline
    assert (glio[:, 1] > 0.05).all()  # off the midline, in a hemisphere
    assert (men[:, 0] < 0).all()  # upper half, against the skull
    assert pit[:, 2].mean() < glio[:, 2].mean()  # pituitary tumors are the small ones


@pytest.mark.parametrize("shortcut", ["marker", "border", "intensity"])
def test_shortcut_stays_outside_the_brain_and_encodes_the_class(shortcut):
    clean = make_phantoms(8, size=64, seed=5)
    ds = make_phantoms(8, size=64, seed=5, shortcut=shortcut)
    for s, c in zip(ds.samples, clean.samples):
        sc = s.meta["shortcut_mask"]
        assert sc.any() and not (sc & s.meta["brain_mask"]).any()
        assert s.meta["shortcut_class"] == s.label
        # The shortcut changes exactly its own pixels: everything else is the same picture.
        np.testing.assert_array_equal(s.image[~sc], c.image[~sc])
        assert not np.allclose(s.image[sc], c.image[sc])


@pytest.mark.parametrize("shortcut", ["border", "intensity"])
def test_grey_level_shortcuts_survive_preprocessing_in_class_order(shortcut):
    # The recipe clips to percentiles and min-max scales: a shortcut outside that range would vanish.
    recipe = PreprocessRecipe(size=64)
    ds = make_phantoms(40, size=64, seed=7, shortcut=shortcut)
    levels = {c: [] for c in ds.classes}
    for s in ds.samples:
        levels[s.label].append(recipe(s.image)[s.meta["shortcut_mask"]].mean())
    ordered = [levels[c] for c in ds.classes]
    for lower, higher in zip(ordered, ordered[1:]):
        assert max(lower) < min(higher)


def test_marker_is_at_the_top_of_the_model_input_range():
    recipe = PreprocessRecipe(size=64)
    for s in make_phantoms(8, size=64, seed=7, shortcut="marker").samples:
        x = recipe(s.image)
        assert np.allclose(x[s.meta["shortcut_mask"]], x.max())


def test_partial_shortcut_and_patients():
    ds = make_phantoms(200, size=48, seed=0, shortcut="marker", shortcut_prob=0.5, slices_per_patient=5)
    agree = np.mean([s.meta["shortcut_class"] == s.label for s in ds.samples])
    assert 0.35 < agree < 0.65
    patients = {}
    for s in ds.samples:
        patients.setdefault(s.patient_id, set()).add(s.label)
    assert len(patients) == 40 and all(len(v) == 1 for v in patients.values())


def test_custom_classes_and_bad_arguments():
    ds = make_phantoms(4, classes=("healthy", "tumour_x"), size=48)
    assert ds.classes == ["healthy", "tumour_x"]
    assert not ds.samples[0].mask.any() and ds.samples[1].mask.any()
    with pytest.raises(ValueError, match="shortcut"):
        make_phantoms(2, shortcut="watermark")
    with pytest.raises(ValueError, match="size"):
        make_phantoms(2, size=8)
