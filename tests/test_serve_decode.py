"""Upload decoding and the input check, as units: the slice served must be the slice the dataset
readers give for the same file (same gray conversion, rescale, orientation), and the simple
out-of-distribution rules must flag what they claim to and pass real-looking slices."""

from __future__ import annotations

import numpy as np
import pytest

from serve_support import chest_xray, colour_photo, dicom, head_slice, head_volume, jpeg, nifti, png
from tumorlens.data.readers.dicom import read_dicom
from tumorlens.data.readers.images import read_image
from tumorlens.data.readers.nifti import read_nifti
from tumorlens.serve.decode import decode_upload
from tumorlens.serve.errors import ServiceError
from tumorlens.inputcheck.rules import check_rules as check_input
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.upload import sniff_format

SETTINGS = ServeSettings()


def same_as_reader(data: bytes, path, reader, tmp_path):
    p = tmp_path / path
    p.write_bytes(data)
    expected = reader(p)
    got = decode_upload(data, SETTINGS)
    expected = [e[0] for e in expected] if isinstance(expected, list) else [expected[0]]
    assert len(got.images) == len(expected)
    for a, b in zip(got.images, expected):
        assert a.shape == b.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-3)
    return got


def test_rgb_jpeg_matches_the_dataset_reader(tmp_path):
    rgb = np.stack([head_slice(), head_slice(), head_slice()], axis=2)
    got = same_as_reader(jpeg(rgb), "a.jpg", read_image, tmp_path)
    assert got.format == "JPEG" and got.colour_fraction < 0.01


def test_16bit_png_keeps_its_range(tmp_path):
    img = head_slice().astype(np.uint16) * 200
    got = same_as_reader(png(img), "a.png", read_image, tmp_path)
    assert got.images[0].max() > 255


def test_dicom_rescale_and_monochrome1_match_the_reader(tmp_path):
    data = dicom(head_slice().astype(np.uint16), photometric="MONOCHROME1", slope=2.0, intercept=-100)
    got = same_as_reader(data, "a.dcm", read_dicom, tmp_path)
    assert got.meta["modality"] == "MR"
    # MONOCHROME1 is inverted: the background (stored 0) becomes the brightest value
    assert got.images[0][0, 0] == got.images[0].max()


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_orientation_matches_the_reader(tmp_path, gz):
    vol = head_volume(4)
    vol[5:15, 40:60, :] = 255  # an asymmetric mark, so a flip or transpose would show
    got = same_as_reader(nifti(vol, gz=gz), "v.nii.gz" if gz else "v.nii", read_nifti, tmp_path)
    assert got.is_volume and got.meta["slices"] == 4


def test_nifti_4d_uses_the_first_volume_and_says_so():
    vol = np.stack([head_volume(3), head_volume(3) * 0], axis=3)
    got = decode_upload(nifti(vol), SETTINGS)
    assert len(got.images) == 3 and got.images[1].max() > 0
    assert any("first volume" in n for n in got.notes)


@pytest.mark.parametrize("data,fmt", [
    (png(head_slice()), "png"), (jpeg(head_slice()), "jpeg"), (dicom(head_slice()), "dicom"),
    (nifti(head_volume(2)), "nifti"),
])
def test_sniffing(data, fmt):
    assert sniff_format(data) == fmt


def test_too_many_slices_is_refused_from_the_header():
    settings = ServeSettings(max_slices=3)
    with pytest.raises(ServiceError) as err:
        decode_upload(nifti(head_volume(5)), settings)
    assert err.value.status == 413


def test_nan_voxels_become_background_with_a_note():
    vol = head_volume(3).astype(np.float32)
    vol[:5, :5, 1] = np.nan
    got = decode_upload(nifti(vol), SETTINGS)
    assert all(np.isfinite(im).all() for im in got.images)
    assert "non-finite values were set to 0" in got.notes


def test_head_slices_pass_the_input_check():
    for seed in range(5):
        for tumor in (True, False):
            check = check_input(head_slice(160, tumor=tumor, seed=seed).astype(np.float32))
            assert check.ok, check.findings


def test_colour_photo_is_refused_and_gray_photo_is_flagged():
    photo = colour_photo()
    decoded = decode_upload(jpeg(photo), SETTINGS)
    check = check_input(decoded.images[0], decoded.colour_fraction)
    assert check.refuse and check.findings[0].code == "colour_image"
    from skimage import data

    assert check_input(data.camera().astype(np.float32)).unlike_training  # a gray photo fills the frame


def test_frame_filling_radiograph_is_unlike_training():
    check = check_input(chest_xray().astype(np.float32))
    assert check.unlike_training and not check.refuse


def test_non_mr_dicom_is_unlike_training():
    check = check_input(head_slice().astype(np.float32), meta={"modality": "CT", "body_part": "HEAD"})
    assert check.unlike_training and "CT" in check.findings[0].message
