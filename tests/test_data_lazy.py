"""Lazy samples: opening a dataset reads headers only, pixels are read on demand through a bounded
cache, a volume is decoded once for all its slices, and a file that is damaged beyond its header
is skipped and reported by whichever stage reads it first (check, training, evaluation)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tumorlens.data import lazy
from tumorlens.data.checks import check_dataset
from tumorlens.data.errors import UnreadableFile
from tumorlens.data.lazy import SliceCache, SliceRef
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sources import open_dataset


def _gray(seed: int, size=(40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size, dtype=np.uint8)


def _dataset(root, n=3):
    for cls in ("glioma", "notumor"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(_gray(i + 10 * (cls == "glioma"))).save(root / cls / f"{i}.png")
    return root


def _damage_png_body(path):
    """Flip bytes inside the image data: the header and the IEND end marker stay valid, decoding fails."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 20
    data[at : at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


@pytest.fixture(autouse=True)
def fresh_cache():
    lazy.CACHE.clear()
    yield
    lazy.CACHE.clear()


def test_opening_reads_headers_only_and_pixels_on_demand(tmp_path):
    misses = lazy.CACHE.misses
    ds = open_dataset(_dataset(tmp_path / "d"), progress=False)
    assert len(ds) == 6 and all(s.is_lazy for s in ds.samples)
    assert lazy.CACHE.misses == misses  # no pixel decoded yet
    assert ds.samples[0].shape == (40, 48)  # from the header
    s = ds.samples[0]
    np.testing.assert_array_equal(s.image, _gray(int(s.path[-5]) + 10 * (s.label == "glioma")))
    assert lazy.CACHE.misses == misses + 1
    assert s.meta["color"] is False  # a fact only the pixels tell, added when they are read
    with pytest.raises(ValueError):
        s.image[0, 0] = 1  # the cached array is shared: read-only


def test_cache_stays_within_its_budget(tmp_path):
    root = _dataset(tmp_path / "d", n=10)
    ds = open_dataset(root, progress=False)
    one = 40 * 48 * 4
    cache = SliceCache(max_bytes=3 * one)
    for s in ds.samples:
        cache.get(s.ref)
        assert cache.nbytes <= 3 * one
    assert cache.misses == 20
    cache.get(ds.samples[-1].ref)
    assert cache.hits == 1  # the most recent file is still there


def test_a_volume_is_decoded_once_for_all_its_slices(tmp_path):
    import nibabel as nib

    vol = np.random.default_rng(0).normal(100, 10, (20, 24, 7)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    ds = open_dataset(tmp_path / "v.nii.gz", progress=False)
    assert len(ds) == 7 and [s.meta["slice_index"] for s in ds.samples] == list(range(7))
    misses = lazy.CACHE.misses
    images = [s.image for s in ds.samples]
    assert lazy.CACHE.misses == misses + 1
    np.testing.assert_allclose(images[3], vol[::-1, ::-1, 3].T)


def test_masks_are_known_without_reading_and_read_lazily(tmp_path):
    root = tmp_path / "fig"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["index,label,class_name,pid"]
    for i in range(1, 4):
        Image.fromarray(_gray(i, (32, 32))).save(root / "images" / f"{i}.png")
        m = np.zeros((32, 32), np.uint8)
        m[4:10, 5:9] = 255
        Image.fromarray(m).save(root / "masks" / f"{i}.png")
        rows.append(f"{i},1,meningioma,P{i}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    misses = lazy.CACHE.misses
    ds = open_dataset(root, progress=False)
    assert ds.has_masks() and lazy.CACHE.misses == misses
    assert ds.samples[0].mask.sum() == 6 * 4


def test_damage_found_at_read_time_is_skipped_and_reported_by_the_check(tmp_path):
    root = _dataset(tmp_path / "d")
    _damage_png_body(root / "glioma" / "1.png")
    ds = open_dataset(root, progress=False)
    assert len(ds) == 6 and not ds.skipped  # the header and the end marker are fine
    report = check_dataset(ds, progress=False)
    assert report.n_samples == 5 and len(ds) == 5
    assert [s["path"].split("/")[-2:] for s in report.skipped] == [["glioma", "1.png"]]
    assert any("could not be read" in f for f in report.findings)


def test_training_and_evaluation_skip_a_file_damaged_beyond_its_header(tmp_path):
    from tumorlens.evaluation.inference import predict_logits, truth_indices
    from tumorlens.models.checkpoint import TumorModel
    from tumorlens.models.registry import build_model
    from tumorlens.training.datasets import preprocess_all

    root = _dataset(tmp_path / "d")
    _damage_png_body(root / "notumor" / "2.png")
    ds = open_dataset(root, progress=False)
    x = preprocess_all(ds.subset(range(len(ds))), PreprocessRecipe(size=32))
    assert x.shape[0] == 5

    sub = ds.subset(range(len(ds)))
    model = TumorModel(net=build_model("simple_cnn", 2), arch="simple_cnn", classes=["glioma", "notumor"],
                       recipe=PreprocessRecipe(size=32))
    logits = predict_logits(model, sub)
    assert logits.shape == (5, 2) and len(truth_indices(model, sub)) == 5
    assert [k.path.endswith("2.png") for k in ds.skipped] == [True]  # reported once, with the whole dataset
    with pytest.raises(UnreadableFile):
        ds.samples[[s.path for s in ds.samples].index(str(root / "notumor" / "2.png"))].image


def test_a_sample_needs_pixels_or_a_reference():
    from tumorlens.data.sample import Sample

    with pytest.raises(ValueError, match="needs an image"):
        Sample(path="x.png")
    ref = SliceRef("/nonexistent/x.png", "image")
    s = Sample(ref=ref, path=ref.path)
    with pytest.raises(UnreadableFile, match="cannot open"):
        s.image
    assert s.error and "cannot open" in s.error


def test_a_mask_given_to_a_lazy_sample_keeps_it_lazy(tmp_path):
    """The audit gives every Kaggle slice the segmenter's mask: that must not pin the slice's pixels
    for the whole run (1,311 float32 images on Kaggle); the mask comes back exactly as given."""
    ds = open_dataset(_dataset(tmp_path / "d"), progress=False)
    s = ds.samples[0]
    assert s.mask is None and not s.has_mask
    m = np.zeros(s.shape, bool)
    m[3:11, 7:20] = True
    s.mask = m
    assert s.is_lazy and s.has_mask
    np.testing.assert_array_equal(s.mask, m)
    assert s.mask.dtype == bool
    with pytest.raises(ValueError, match="mask shape"):
        s.mask = np.zeros((5, 5), bool)
    s.image = s.image.copy()  # pixels set by hand keep the mask
    np.testing.assert_array_equal(s.mask, m)
