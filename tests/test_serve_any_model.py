"""`tumorlens serve` with a model tumorlens did not train (issue 26): a state dict with its spec serves
predictions and CAM explanations; a black box serves predictions and occlusion maps (in the slow
lane), and asking it for a gradient method is a 422 that names the methods it has."""

from __future__ import annotations

import cv2
import pytest
import torch
import torchvision
from fastapi.testclient import TestClient

from tumorlens.serve.app import create_app
from tumorlens.serve.settings import ServeSettings

from serve_support import head_slice, mri_slice

CLASSES = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]


def png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def state_dict(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("foreign") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), path)
    return path


def serve(model_path, tmp_path, **options):
    settings = ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                             segmenter=False, model_options=options)
    return TestClient(create_app(settings))


def test_a_state_dict_serves_predictions_and_cam_maps(state_dict, tmp_path):
    with serve(state_dict, tmp_path, arch="resnet18", classes=CLASSES, input_size=64, normalize="imagenet") as c:
        r = c.post("/v1/predict", files={"file": ("x.png", png(head_slice()), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["probabilities"]) == {"glioma", "meningioma", "notumor", "pituitary"}
        model = c.get("/v1/model").json()
        assert "gradcam" in model["service"]["explain_methods"]
        r = c.post("/v1/explain?method=gradcam", files={"file": ("x.png", png(head_slice()), "image/png")})
        assert r.status_code == 200, r.text


def test_a_black_box_serves_occlusion_only(tmp_path):
    import numpy as np

    from tumorlens.models.loading import load_model

    def constant(batch):  # a black box: probabilities from numpy, no layers
        return np.tile([[0.7, 0.1, 0.1, 0.1]], (len(batch), 1))

    model = load_model(constant, classes=CLASSES, input_size=32, channels=1, outputs="probabilities")
    settings = ServeSettings(auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}", segmenter=False)
    with TestClient(create_app(settings, model=model)) as c:
        model = c.get("/v1/model").json()
        assert model["service"]["explain_methods"] == ["occlusion"]
        assert model["service"]["default_method"] == "occlusion"
        assert model["service"]["slow_methods"] == ["occlusion"]  # many passes per map: the slow lane
        r = c.post("/v1/predict", files={"file": ("x.png", png(mri_slice()), "image/png")})
        assert r.status_code == 200 and r.json()["predicted_class"] == "glioma"
        r = c.post("/v1/explain?method=gradcam", files={"file": ("x.png", png(head_slice()), "image/png")})
        assert r.status_code == 422 and "occlusion" in r.json()["error"]["message"]
        r = c.post("/v1/explain", files={"file": ("x.png", png(head_slice()), "image/png")})
        assert r.status_code == 200, r.text
