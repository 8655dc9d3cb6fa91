"""POST /v1/explain: the heatmap overlay (JSON with base64 PNGs, or the PNG itself), the attention
shares per region and the plain-language reading built from them."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve_support import chest_xray, colour_photo, head_slice, head_volume, jpeg, make_checkpoint, mri_slice, nifti, png
from tumorlens.serve.app import create_app
from tumorlens.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    app = create_app(ServeSettings(model_path=make_checkpoint(tmp / "m.pt", confident_class=0), auth=False,
                                   db_url=f"sqlite:///{tmp / 'a.sqlite'}"))
    with TestClient(app) as c:
        c.app_state = app.state
        yield c


def explain(client, data: bytes, query: str = "", **kw):
    return client.post(f"/v1/explain{query}", files={"file": ("x.png", data)}, **kw)


def decode_png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def test_explain_json(client):
    r = explain(client, png(mri_slice(160)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predicted_class"] == "glioma"
    ex = body["explanation"]
    assert ex["method"] == "gradcam" and ex["target_class"] == "glioma"
    size = 64  # the model's input size
    assert decode_png(ex["overlay_png"]).shape == (size, size, 3)
    layer = decode_png(ex["heatmap_png"])
    assert layer.shape == (size, size, 4)  # RGBA: transparent where the heat is zero
    assert layer[..., 3].max() > 200 and layer[..., 3].min() < layer[..., 3].max()
    assert decode_png(ex["image_png"]).shape == (size, size)
    shares, areas = ex["attention"]["shares"], ex["attention"]["areas"]
    assert abs(shares["brain"] + shares["skull"] + shares["background"] - 1) < 0.01
    assert abs(areas["brain"] + areas["skull"] + areas["background"] - 1) < 0.01
    assert shares["tumor_candidates"] <= shares["brain"] + 1e-6
    assert areas["tumor_candidates"] > 0  # the phantom's bright blob is found
    # the sentences quote the numbers
    assert f"{100 * shares['brain']:.0f}% falls on the brain" in ex["summary"]
    assert "glioma" in ex["summary"]
    rows = client.app_state.audit.records(request_id=body["request_id"])
    assert rows[0]["endpoint"] == "explain" and rows[0]["method"] == "gradcam"


def test_overlay_png_on_request(client):
    for kwargs in ({"query": "?format=png"}, {"headers": {"Accept": "image/png"}}):
        r = explain(client, png(mri_slice(160)), **kwargs)  # a slice the input check lets through: it names a class
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["x-predicted-class"] == "glioma" and r.headers["x-method"] == "gradcam"
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)


def test_alpha_changes_the_overlay(client):
    a = decode_png(explain(client, png(head_slice(160)), "?alpha=0").json()["explanation"]["overlay_png"])
    b = decode_png(explain(client, png(head_slice(160)), "?alpha=1").json()["explanation"]["overlay_png"])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


@pytest.mark.parametrize("method", ["gradcam++", "layercam", "saliency"])
def test_other_methods(client, method):
    r = explain(client, png(head_slice(160)), f"?method={method.replace('+', '%2B')}")
    assert r.status_code == 200, r.text
    assert r.json()["explanation"]["method"] == method


def test_target_class(client):
    ex = explain(client, png(mri_slice(160)), "?target=notumor").json()["explanation"]
    assert ex["target_class"] == "notumor"
    assert "evidence for notumor" in ex["summary"]


@pytest.mark.parametrize("query,code", [("?method=lime", "invalid_method"), ("?method=nonsense", "invalid_method"),
                                        ("?target=cat", "invalid_target")])
def test_bad_parameters(client, query, code):
    r = explain(client, png(head_slice(160)), query)
    assert r.status_code == 422 and r.json()["error"]["code"] == code


def test_volume_slice(client):
    data = nifti(head_volume(5))
    body = explain(client, data).json()
    assert body["explanation"]["slice"] == 2 and body["input"]["slices"] == 5  # the middle slice by default
    assert explain(client, data, "?slice=4").json()["explanation"]["slice"] == 4
    r = explain(client, data, "?slice=9")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_slice"


def test_refused_and_withheld(client):
    r = explain(client, jpeg(colour_photo()))
    assert r.status_code == 422 and r.json()["error"]["code"] == "out_of_distribution"
    body = explain(client, png(chest_xray())).json()
    assert body["predicted_class"] is None and body["status"] == "out_of_distribution"
    assert body["explanation"]["summary"].startswith("No class is given")
