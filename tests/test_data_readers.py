"""One reader for files and uploads: the same DICOM, NIfTI and JPEG give bit-identical model input
through `tumorlens predict` and through the service's /v1/predict; the registry picks readers by
suffix and by magic bytes; reader errors name the problem, never a file object."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_support import dicom, head_slice, jpeg, make_checkpoint, nifti
from tumorlens.cli import app as cli_app
from tumorlens.data.errors import UnreadableFile
from tumorlens.data.readers import READERS, reader_for_bytes, reader_for_path
from tumorlens.models.checkpoint import TumorModel
from tumorlens.serve.app import create_app
from tumorlens.serve.decode import decode_upload
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.settings import ServeSettings


def _tinted_rgb() -> np.ndarray:
    """A head slice whose channels really differ (by 24 levels) yet is far from a colour photo:
    float luma and PIL's integer luma disagree on it, so only one shared reader gives equal input."""
    g = head_slice(96).astype(np.int16)
    return np.clip(np.stack([g + 12, g, g - 12], axis=2), 0, 255).astype(np.uint8)


def _oblique_volume() -> tuple[bytes, int]:
    """A NIfTI volume stored in LPS order with an asymmetric mark: reorientation must happen alike."""
    import nibabel as nib

    vol = np.stack([head_slice(64, tumor=k == 1, seed=k).T for k in range(3)], axis=2).astype(np.float32)
    vol[5:12, 40:50, :] = 250
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    return nib.Nifti1Image(vol, affine).to_bytes(), 3


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", size=64)


@pytest.fixture
def captured(monkeypatch):
    """Every tensor TumorModel.prepare hands to the network, in call order."""
    seen: list[np.ndarray] = []
    original = TumorModel.prepare

    def spy(self, images):
        x = original(self, images)
        seen.append(x.numpy().copy())
        return x

    monkeypatch.setattr(TumorModel, "prepare", spy)
    return seen


@pytest.mark.parametrize("kind", ["dicom", "nifti", "jpeg"])
def test_predict_command_and_service_give_bit_identical_model_input(kind, tmp_path, model_path, captured):
    if kind == "dicom":
        data, name, n = dicom(head_slice(80).astype(np.uint16) * 3, photometric="MONOCHROME1", slope=2.0,
                              intercept=-50.0), "x.dcm", 1
    elif kind == "nifti":
        (data, n), name = _oblique_volume(), "v.nii"
    else:
        data, name, n = jpeg(_tinted_rgb(), 92), "x.jpg", 1
    path = tmp_path / name
    path.write_bytes(data)

    result = CliRunner().invoke(cli_app, ["predict", str(path), "--model", str(model_path), "--json"])
    assert result.exit_code == 0, result.output
    from_cli = np.concatenate(captured)
    captured.clear()

    service = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    with TestClient(service) as client:
        captured.clear()  # the service warms its model up at start
        r = client.post("/v1/predict", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    from_service = np.concatenate(captured)

    assert from_cli.shape == from_service.shape == (n, 1, 64, 64)
    assert from_cli.dtype == from_service.dtype == np.float32
    assert np.array_equal(from_cli, from_service)  # bit for bit, not approximately
    assert from_cli.std() > 0  # a real slice, not an empty batch of zeros


def test_registry_picks_readers_by_suffix_then_magic(tmp_path):
    no_suffix = tmp_path / "IM0001"
    no_suffix.write_bytes(dicom(head_slice(32).astype(np.uint16)))
    assert reader_for_path(no_suffix) is READERS["dicom"]
    assert reader_for_path(tmp_path / "a.nii.gz") is READERS["nifti"]
    assert reader_for_path(tmp_path / "a.JPG") is READERS["image"]
    assert reader_for_path(tmp_path / "notes.txt") is None
    assert reader_for_bytes(jpeg(head_slice(32))) is READERS["image"]
    assert reader_for_bytes(_oblique_volume()[0]) is READERS["nifti"]
    assert reader_for_bytes(b"hello world") is None


def test_header_reads_sizes_without_decoding(tmp_path):
    data, n = _oblique_volume()
    with READERS["nifti"].read(data) as header:
        assert (header.n_slices, header.height, header.width) == (n, 64, 64)
        assert header.meta["shape"] == (64, 64, 3)
    with READERS["dicom"].read(dicom(head_slice(48).astype(np.uint16))) as header:
        assert (header.n_slices, header.height, header.width) == (1, 48, 48)
        assert header.meta["modality"] == "MR"


@pytest.mark.parametrize("reader,data,needle", [
    ("nifti", _oblique_volume()[0][:-3000], "truncated NIfTI volume"),
    ("dicom", b"\0" * 128 + b"DICM" + b"\x02\x00garbage", "DICOM"),
    ("image", jpeg(head_slice(64))[:200], "truncated"),
])
def test_reader_errors_on_bytes_never_show_a_file_object(reader, data, needle):
    with pytest.raises(UnreadableFile) as err:
        READERS[reader].load(data)
    assert needle.lower() in str(err.value).lower()
    assert "BytesIO" not in str(err.value) and "0x" not in str(err.value)
    with pytest.raises(ServiceError) as served:
        decode_upload(data, ServeSettings())
    assert served.value.status in (415, 422) and "BytesIO" not in served.value.message
