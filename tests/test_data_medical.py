"""Original figshare .mat (v7.3/HDF5 and v5), DICOM and NIfTI readers, on fixtures built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from tumorlens.data.sources import DatasetError, open_dataset


# -- fixtures ---------------------------------------------------------------------------------------
def write_cheng_mat(path: Path, image: np.ndarray, label: int, pid: str, mask: np.ndarray) -> Path:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5, arrays column-major (so stored transposed),
    char arrays as uint16 code units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("cjdata")
        g["image"] = image.T.astype(np.int16)
        g["label"] = np.array([[float(label)]])
        g["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
        g["tumorMask"] = mask.T.astype(np.uint8)
        ys, xs = np.nonzero(mask)
        g["tumorBorder"] = np.array([[v for pair in zip(xs[:4], ys[:4]) for v in pair]], dtype=np.float64)
    return path


def write_dicom(path: Path, pixels: np.ndarray, *, slope=1.0, intercept=0.0, photometric="MONOCHROME2",
                patient="PAT1", with_pixels=True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientID = patient
    ds.SeriesInstanceUID = generate_uid()
    if with_pixels:
        frames = pixels.shape[0] if pixels.ndim == 3 else 1
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(h=24, w=20, scale=10):
    return (np.arange(h * w).reshape(h, w) % 97 * scale).astype(np.uint16)


# -- figshare .mat ----------------------------------------------------------------------------------
def test_cheng_mat_files_with_transpose_pid_and_mask(tmp_path):
    root = tmp_path / "figshare_mat"
    img = np.zeros((30, 20), np.int16)
    img[5:10, 2:8] = 700  # asymmetric, so a missed transpose shows
    mask = np.zeros((30, 20), bool)
    mask[5:10, 2:8] = True
    for i, (label, pid) in enumerate([(1, "100360"), (2, "MR040237"), (3, "112649")], start=1):
        write_cheng_mat(root / "brainTumorDataPublic_1-766" / f"{i}.mat", img, label, pid, mask)
    (root / "cvind.mat").write_bytes(b"")  # the distribution's fold file; here empty
    with h5py.File(root / "other.mat", "w") as f:
        f["x"] = np.zeros(3)
    ds = open_dataset(root, progress=False)
    assert ds.kind == "figshare_mat"
    assert ds.classes == ["glioma", "meningioma", "pituitary"]
    by_pid = {s.patient_id: s for s in ds.samples}
    assert set(by_pid) == {"100360", "MR040237", "112649"}
    s = by_pid["100360"]
    assert s.label == "meningioma" and s.image.shape == (30, 20) and s.image[6, 3] == 700
    np.testing.assert_array_equal(s.mask, mask)
    assert s.meta["tumor_border"].shape == (4, 2)
    reasons = {Path(k.path).name: k.reason for k in ds.skipped}
    assert "empty" in reasons["cvind.mat"] and "cjdata" in reasons["other.mat"]


def test_cheng_mat_v5_copy_is_read_too(tmp_path):
    from scipy.io import savemat

    img = _ramp().astype(np.int16)
    mask = img > 500
    savemat(tmp_path / "7.mat", {"cjdata": {"image": img, "label": 2.0, "PID": "42", "tumorMask": mask.astype(np.uint8)}})
    ds = open_dataset(tmp_path / "7.mat", progress=False)
    s = ds.samples[0]
    assert s.label == "glioma" and s.patient_id == "42"
    np.testing.assert_array_equal(s.image, img)
    np.testing.assert_array_equal(s.mask, mask)


# -- DICOM ------------------------------------------------------------------------------------------
def test_dicom_rescale_monochrome1_multiframe_and_bad_files(tmp_path):
    root = tmp_path / "dicom"
    raw = _ramp()
    write_dicom(root / "plain.dcm", raw)
    write_dicom(root / "rescaled.dcm", raw, slope=2.0, intercept=-100.0)
    write_dicom(root / "inverted.dcm", raw, photometric="MONOCHROME1")
    write_dicom(root / "IM0004", np.stack([raw, raw // 2, raw // 3]))  # no suffix, multi-frame
    write_dicom(root / "nopixels.dcm", raw, with_pixels=False)
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    ds = open_dataset(root, progress=False)
    assert ds.kind == "dicom" and ds.classes == [] and all(s.label is None for s in ds.samples)
    by = {}
    for s in ds.samples:
        by.setdefault(Path(s.path).name, []).append(s)
    np.testing.assert_array_equal(by["plain.dcm"][0].image, raw)
    np.testing.assert_allclose(by["rescaled.dcm"][0].image, raw * 2.0 - 100.0)
    inv = by["inverted.dcm"][0].image
    np.testing.assert_allclose(inv, raw.max() + raw.min() - raw.astype(np.float32))  # bright stays bright
    frames = by["IM0004"]
    assert [f.meta["slice_index"] for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[1].image, raw // 2)
    assert len({f.name for f in frames}) == 3
    assert frames[0].patient_id == "PAT1" and frames[0].meta["modality"] == "MR"
    reasons = {Path(k.path).name: k.reason for k in ds.skipped}
    assert reasons["nopixels.dcm"] == "DICOM without pixel data"
    assert "broken.dcm" in reasons


def test_dicom_labels_come_from_class_folders(tmp_path):
    for cls in ("glioma", "notumor"):
        for i in range(2):
            write_dicom(tmp_path / "ds" / cls / "series1" / f"{i}.dcm", _ramp(), patient=f"{cls}{i}")
    ds = open_dataset(tmp_path / "ds", progress=False)
    assert ds.kind == "dicom" and ds.classes == ["glioma", "notumor"]
    assert all(Path(s.path).parts[-3] == s.label for s in ds.samples)
    assert ds.has_patients()


# -- NIfTI ------------------------------------------------------------------------------------------
def test_nifti_volume_gives_one_slice_per_axial_plane(tmp_path):
    vol = np.zeros((12, 10, 5), np.float32)  # x (L->R), y (P->A), z (I->S)
    for k in range(5):
        vol[..., k] = k * 10
    vol[11, 9, 2] = 500  # right-most, most anterior voxel of slice 2
    path = tmp_path / "vols" / "scan.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.5, 1.0])), path)
    (tmp_path / "vols" / "bad.nii").write_bytes(b"not a nifti header at all")
    ds = open_dataset(path.parent, progress=False)
    assert ds.kind == "nifti" and len(ds) == 5
    assert [s.meta["slice_index"] for s in ds.samples] == list(range(5))
    s2 = ds.samples[2]
    assert s2.image.shape == (10, 12)  # rows anterior->posterior, columns across
    assert s2.image[0, 0] == 500  # anterior at the top, patient's right on the image's left
    assert s2.meta["voxel_size"] == (1.0, 1.0, 2.5) and s2.label is None
    assert ds.samples[3].image[5, 5] == 30
    assert [Path(k.path).name for k in ds.skipped] == ["bad.nii"]


def test_nifti_with_class_folder_label_and_kind_forcing(tmp_path):
    vol = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    (tmp_path / "d" / "glioma").mkdir(parents=True)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "d" / "glioma" / "a.nii")
    write_dicom(tmp_path / "d" / "glioma" / "b.dcm", _ramp())
    mixed = open_dataset(tmp_path / "d", progress=False)
    assert len(mixed) == 4 and mixed.classes == ["glioma"]
    only_nifti = open_dataset(tmp_path / "d", kind="nifti", progress=False)
    assert len(only_nifti) == 3 and only_nifti.kind == "nifti"
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        open_dataset(tmp_path / "d", kind="png", progress=False)
