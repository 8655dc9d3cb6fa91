"""Class-folder and figshare-converted readers, on small files written in tmp_path, bad files included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tumorlens.data.sources import DatasetError, open_dataset, parse_class_map

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _gray(seed: int, size=(40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    return np.clip(100 + 80 * np.sin(xx / (3 + seed % 5)) + rng.normal(0, 5, size), 0, 255).astype(np.uint8)


def _write(path: Path, arr: np.ndarray, rgb: bool = False, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if rgb:
        img = img.convert("RGB")
    img.save(path, format=fmt)
    return path


def _kaggle_layout(root: Path) -> Path:
    """Training/<class>/ + Testing/<class>/ with every supported format, RGB and gray."""
    suffixes = [".jpg", ".png", ".bmp", ".tif"]
    for split, n in (("Training", 3), ("Testing", 2)):
        for ci, cls in enumerate(CLASSES):
            for i in range(n):
                suffix = suffixes[(ci + i) % len(suffixes)]
                _write(root / split / cls / f"{cls}_{i}{suffix}", _gray(ci * 10 + i), rgb=(cls == "notumor"))
    (root / "README.md").write_text("notes beside the data are not data")
    return root


def test_kaggle_layout_reads_splits_classes_and_channels(tmp_path):
    ds = open_dataset(_kaggle_layout(tmp_path / "kaggle"), progress=False)
    assert ds.kind == "split_class_folders"
    assert ds.classes == list(CLASSES)
    assert len(ds) == 4 * 5 and not ds.skipped
    assert {s.split for s in ds.samples} == {"Training", "Testing"}
    assert len(ds.by_split("Testing")) == 8
    for s in ds.samples:
        assert s.image.dtype == np.float32 and s.image.shape == (40, 48)
        assert s.meta["channels"] == (3 if s.label == "notumor" else 1)
        assert s.label in CLASSES and Path(s.path).parent.name == s.label
    # Gray stored as RGB is the same picture: the conversion must not shift intensities.
    rgb_bmp = next(s for s in ds.samples if s.label == "notumor" and s.path.endswith(".bmp"))
    idx = int(Path(rgb_bmp.path).stem.split("_")[1])
    np.testing.assert_allclose(rgb_bmp.image, _gray(20 + idx), atol=1)
    assert rgb_bmp.meta["color"] is False


def test_flat_class_folders_and_class_map(tmp_path):
    root = tmp_path / "flat"
    for ci, cls in enumerate(("tumor_a", "tumor_b", "none")):
        for i in range(3):
            _write(root / cls / f"{i}.png", _gray(ci + i))
    ds = open_dataset(root, class_map="tumor_a=glioma,tumor_b=glioma,none=notumor", progress=False)
    assert ds.kind == "class_folders"
    assert ds.classes == ["glioma", "notumor"]
    assert sum(s.label == "glioma" for s in ds.samples) == 6
    assert all(s.split is None for s in ds.samples)
    with pytest.raises(DatasetError, match="class map names"):
        open_dataset(root, class_map={"typo": "glioma"}, progress=False)


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "bad"
    for i in range(2):
        _write(root / "glioma" / f"ok{i}.jpg", _gray(i))
    good = _write(tmp_path / "full.jpg", _gray(7, size=(64, 64)))
    data = good.read_bytes()
    (root / "glioma" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "glioma" / "empty.png").write_bytes(b"")
    (root / "glioma" / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "glioma" / "notes.xyz").write_text("what is this")
    ds = open_dataset(root, progress=False)
    assert len(ds) == 2
    reasons = {Path(s.path).name: s.reason for s in ds.skipped}
    assert set(reasons) == {"truncated.jpg", "empty.png", "noise.png", "notes.xyz"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "not a readable image" in reasons["noise.png"]
    assert "unsupported" in reasons["notes.xyz"]


def test_sixteen_bit_and_palette_images_keep_their_values(tmp_path):
    root = tmp_path / "deep"
    arr16 = (np.arange(30 * 30, dtype=np.uint16).reshape(30, 30) * 60).astype(np.uint16)
    _write(root / "a" / "deep.png", arr16)
    pal = Image.fromarray(_gray(3)).convert("P")
    (root / "b").mkdir(parents=True)
    pal.save(root / "b" / "pal.png")
    ds = open_dataset(root, progress=False)
    deep = next(s for s in ds.samples if s.label == "a")
    assert deep.image.max() == arr16.max()  # 16-bit range kept, not squeezed to 8 bits
    assert next(s for s in ds.samples if s.label == "b").image.shape == (40, 48)


def test_empty_and_unlabeled_datasets_are_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=str(empty)):
        open_dataset(empty, progress=False)
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(tmp_path / "missing", progress=False)
    loose = tmp_path / "loose"
    for i in range(3):
        _write(loose / f"{i}.png", _gray(i))
    with pytest.raises(DatasetError, match="no labels.*class folders"):
        open_dataset(loose, progress=False)
    ds = open_dataset(loose, allow_unlabeled=True, progress=False)
    assert ds.kind == "images" and ds.classes == [] and len(ds) == 3
    only_bad = tmp_path / "only_bad" / "glioma"
    only_bad.mkdir(parents=True)
    (only_bad / "x.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no readable slices.*empty file"):
        open_dataset(only_bad.parent, progress=False)


def test_single_file_is_readable_without_label(tmp_path):
    path = _write(tmp_path / "one.png", _gray(1), rgb=True)
    ds = open_dataset(path, progress=False)
    assert len(ds) == 1 and ds.samples[0].label is None and ds.samples[0].meta["channels"] == 3


def test_parse_class_map_rejects_malformed_entries():
    assert parse_class_map("a=b, c = d") == {"a": "b", "c": "d"}
    with pytest.raises(DatasetError, match="no '='"):
        parse_class_map("a:b")


def _figshare_converted(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(1, 7):
        img = _gray(i, size=(32, 32))
        mask = np.zeros((32, 32), np.uint8)
        mask[8 + i : 16 + i, 10:20] = 255
        _write(root / "images" / f"{i}.png", img)
        _write(root / "masks" / f"{i}.png", mask)
        code = 1 + (i - 1) % 3
        cls = {1: "meningioma", 2: "glioma", 3: "pituitary"}[code]
        rows.append({"index": i, "label": code, "class_name": cls, "pid": f"P{(i - 1) // 2}", "original_size": "512x512"})
    rows.append({"index": 99, "label": 1, "class_name": "meningioma", "pid": "P9", "original_size": "512x512"})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_figshare_converted_folder(tmp_path):
    ds = open_dataset(_figshare_converted(tmp_path / "fig"), progress=False)
    assert ds.kind == "figshare_converted"
    assert ds.classes == ["glioma", "meningioma", "pituitary"]
    assert len(ds) == 6 and ds.has_masks() and ds.has_patients()
    first = ds.samples[0]
    assert first.label == "meningioma" and first.patient_id == "P0" and first.meta["figshare_index"] == 1
    assert first.mask.sum() == 8 * 10 and first.mask[9, 10] and not first.mask[0, 0]
    assert [Path(s.path).name for s in ds.skipped] == ["99.png"]
    assert "missing" in ds.skipped[0].reason or "no such file" in ds.skipped[0].reason
