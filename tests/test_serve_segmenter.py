"""The segmenter's tumor outline in the service (in-process, TestClient): the bundled segmenter
outlines a synthetic bright blob where it is; --no-segmenter leaves `tumor` null; a broken
segmenter file degrades /health and nothing else; a slow segmenter holds up no other request."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_support import head_slice, head_volume, make_checkpoint, mri_slice, nifti, png
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.serve.app import create_app
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.tumor import NOTE


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", confident_class=0)


def make_client(tmp_path, model_path, standin=None, **settings):
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                                   **settings), segmenter=standin)
    return TestClient(app)


def post(client, data: bytes, path: str = "/v1/predict", **kw):
    return client.post(path, files={"file": ("x.png", data, "image/png")}, **kw)


class BrightStandIn:
    """A stand-in segmenter: 'tumor' = white pixels (255; head_slice has none), optionally slow.
    Records each batch it is given."""

    version = "bright-stand-in"
    recipe = PreprocessRecipe(size=32)

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.batches: list[int] = []

    def predict(self, images, batch_size: int = 32):
        self.batches.append(len(images))
        time.sleep(self.delay_s)
        return [np.asarray(im) >= 255 for im in images]


# -- the bundled segmenter ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled(model_path, tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("bundled"), model_path) as c:
        assert c.app.state.service.segmenter.wait_ready(120) == "ready"
        yield c


def test_bundled_segmenter_outlines_the_blob(bundled):
    size = 256
    r = post(bundled, png(head_slice(size)))
    assert r.status_code == 200
    tumor = r.json()["tumor"]
    assert tumor["found"] and tumor["note"] == NOTE and tumor["segmenter"].startswith("unet-")
    # head_slice's blob: a disc of radius size/10 centred at (0.6, 0.42) of the width and height
    cx, cy, radius = 0.6 * size, 0.42 * size, size / 10
    blob_area = np.pi * radius**2 / size**2
    assert 0.5 * blob_area < tumor["area_fraction"] < 2 * blob_area
    box = tumor["bbox"]
    assert box["x"] <= cx <= box["x"] + box["width"] and box["y"] <= cy <= box["y"] + box["height"]
    assert len(tumor["polygons"]) == 1
    points = np.array(tumor["polygons"][0])
    assert 4 <= len(points) <= 60  # simplified, not one point per boundary pixel
    assert ((points >= 0) & (points < size)).all()
    # every outline point lies on the blob's edge, give or take a few pixels
    distance = np.hypot(points[:, 0] - cx, points[:, 1] - cy)
    assert np.abs(distance - radius).max() < 0.25 * radius
    assert bundled.get("/health").json()["segmenter"] == {"state": "ready", "version": tumor["segmenter"]}


def test_explain_says_how_much_heat_lies_inside_the_outline(bundled):
    r = post(bundled, png(head_slice(200)), "/v1/explain")
    assert r.status_code == 200
    body = r.json()
    assert body["tumor"]["found"] and 0 <= body["tumor"]["heatmap_energy_inside"] <= 1
    assert body["explanation"]["image_box"] == {"x": 0, "y": 0, "width": 200, "height": 200}


def test_a_slice_without_a_tumor_is_not_outlined(bundled):
    tumor = post(bundled, png(head_slice(256, tumor=False))).json()["tumor"]
    assert tumor == {**tumor, "found": False, "area_fraction": 0.0, "bbox": None, "polygons": []}


# -- geometry, with a stand-in segmenter ------------------------------------------------------------

def test_outline_is_in_the_uploads_columns_and_rows(tmp_path, model_path):
    image = head_slice(160)[:120]  # 160 wide, 120 tall: a swapped x and y would show
    image[20:41, 100:131] = 255  # a bright rectangle, columns 100-130, rows 20-40
    with make_client(tmp_path, model_path, standin=BrightStandIn()) as c:
        tumor = post(c, png(image)).json()["tumor"]
    assert tumor["bbox"] == {"x": 100, "y": 20, "width": 31, "height": 21}
    assert sorted(map(tuple, tumor["polygons"][0])) == [(100, 20), (100, 40), (130, 20), (130, 40)]
    assert tumor["area_fraction"] == pytest.approx(31 * 21 / (160 * 120), abs=1e-4)


def test_explain_of_a_volume_outlines_the_explained_slice(tmp_path, model_path):
    volume = head_volume(5, 64)
    volume[10:20, 30:40, 3] = 255  # only slice 3 has white pixels (axes: x, y, z)
    with make_client(tmp_path, model_path, standin=BrightStandIn()) as c:
        assert post(c, nifti(volume)).json()["tumor"] is None  # /v1/predict: no per-slice outlines
        assert post(c, nifti(volume), "/v1/explain", params={"slice": 3}).json()["tumor"]["found"]
        assert not post(c, nifti(volume), "/v1/explain", params={"slice": 1}).json()["tumor"]["found"]


# -- off, broken, slow --------------------------------------------------------------------------------

def test_no_segmenter_sends_null(tmp_path, model_path):
    with make_client(tmp_path, model_path, segmenter=False) as c:
        assert post(c, png(head_slice())).json()["tumor"] is None
        assert post(c, png(head_slice()), "/v1/explain").json()["tumor"] is None
        health = c.get("/health").json()
    assert health["status"] == "ok" and health["segmenter"] == {"state": "off", "version": None}


def test_broken_segmenter_file_degrades_health_not_predictions(tmp_path, model_path):
    broken = tmp_path / "seg.pt"
    broken.write_bytes(b"not a segmenter" * 100)
    with make_client(tmp_path, model_path, segmenter_path=broken) as c:
        r = post(c, png(mri_slice()))  # may arrive while the file is being read: it still gets its answer
        assert r.status_code == 200 and r.json()["predicted_class"] == "glioma" and r.json()["tumor"] is None
        assert c.app.state.service.segmenter.wait_ready(60) == "unavailable"
        health = c.get("/health")
        assert post(c, png(head_slice()), "/v1/explain").status_code == 200
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["segmenter"]["state"] == "unavailable"
    assert any("segmenter" in p and "seg.pt" in p for p in health.json()["problems"]), health.json()["problems"]


def test_missing_segmenter_file_stops_the_cli_with_a_message(tmp_path, model_path):
    from tumorlens.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", str(model_path), "--no-auth", "--db",
                                      f"sqlite:///{tmp_path / 'a.sqlite'}", "--segmenter", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2
    assert "segmenter not found" in result.output and "nope.pt" in result.output


def test_a_slow_segmenter_holds_up_no_other_request(tmp_path, model_path):
    slow = BrightStandIn(delay_s=1.5)
    with make_client(tmp_path, model_path, standin=slow) as c:
        c.app.state.service.segmenter.wait_ready(10)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post(c, png(head_slice(seed=k)))))
                   for k in range(3)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(0.3)  # the segmenter is now busy with the first batch
        health_s = _timed(lambda: c.get("/health"))
        volume_s = _timed(lambda: post(c, nifti(head_volume(3, 64))))  # needs no outline
        for t in threads:
            t.join()
        total = time.monotonic() - t0
    assert health_s < 0.5 and volume_s < 1.0, (health_s, volume_s)
    assert len(answers) == 3 and all(a.status_code == 200 and a.json()["tumor"] is not None for a in answers)
    # the requests that queued behind the first batch shared one segmenter pass
    assert sum(slow.batches[1:]) == 3 and len(slow.batches) <= 3 and total < 3 * 1.5 + 1.5


def _timed(call) -> float:
    t = time.monotonic()
    r = call()
    assert r.status_code == 200
    return time.monotonic() - t


def test_outlines_come_back_when_an_app_is_started_again(tmp_path, model_path):
    with make_client(tmp_path, model_path, standin=BrightStandIn()) as c:
        assert post(c, png(head_slice())).json()["tumor"] is not None
    with TestClient(c.app) as again:  # shutdown stopped the segmenter thread; the next request restarts it
        t = time.monotonic()
        assert post(again, png(head_slice())).json()["tumor"] is not None
        assert time.monotonic() - t < 5
