"""The service under faults, in process (issue 19): slow explainers in their own lane with a time
budget, a deleted audit database, the decode memory budget, the public model card, a non-UTF-8 keys
file, and the smaller points (a second file part, a missing closing boundary, HEAD, no memory
addresses, security headers, the API-key scheme in OpenAPI, model-thread timeouts and restarts),
and response models that are what is sent."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from serve_support import API_KEY, CLASSES, head_slice, make_checkpoint, png
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import load_model, save_checkpoint
from tumorlens.models.registry import build_model
from tumorlens.serve.app import create_app
from tumorlens.serve.batching import ModelRunner, Replica
from tumorlens.serve.decode_budget import DecodeBudget, estimate_decode_bytes
from tumorlens.serve.errors import ServiceError, clean_message
from tumorlens.serve.frozen import eager_logits
from tumorlens.serve.settings import ServeSettings
from tumorlens.serve.slow_lane import is_slow

KEY = {"X-API-Key": API_KEY}
SLOW = ("gradcam", "scorecam", "ig", "gradshap")  # methods this app serves


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A checkpoint whose provenance holds what must stay private: paths and training-image hashes."""
    tmp = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = build_model("simple_cnn", len(CLASSES))
    path = save_checkpoint(tmp / "model.pt", net, "simple_cnn", CLASSES, PreprocessRecipe(size=64), provenance={
        "data": "/srv/secret/brain-data", "n_train": 12, "train_phash": ["d2693f0e39693435", "c43a3b396d707265"],
        "config": {"data": "/srv/secret/brain-data", "out": "runs/x", "epochs": 3, "lr": 0.001}},
        metrics={"accuracy": 0.5})
    (tmp / "MODEL_CARD.md").write_text("# Card\n\nTrained on `/srv/secret/brain-data`, Training split.\n")
    return path


@pytest.fixture(scope="module")
def app(model_path, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    return create_app(ServeSettings(model_path=model_path, api_keys=(API_KEY,), db_url=f"sqlite:///{db}",
                                    explain_methods=SLOW, slow_budget_s=600))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, headers=KEY) as c:
        yield c


def predict(client, data: bytes, **kw):
    return client.post("/v1/predict", files={"file": ("x.png", data, "image/png")}, **kw)


# -- 1. slow explainers ----------------------------------------------------------------------------

def test_slow_methods_are_told_apart_by_their_cost():
    assert all(is_slow(m, 224) for m in ("scorecam", "ig", "gradshap"))
    assert not any(is_slow(m, 224) for m in ("gradcam", "gradcam++", "eigencam", "saliency"))


def test_model_card_lists_the_slow_methods(client):
    assert client.get("/v1/model").json()["service"]["slow_methods"] == ["scorecam", "ig", "gradshap"]


@pytest.fixture
def slow_lane_delay(app):
    """Every forward pass of the slow lane's network takes `delay["s"]` longer (a torch hook)."""
    delay = {"s": 0.0}
    handle = app.state.predictor.slow_lane.model.net.register_forward_pre_hook(lambda *_: time.sleep(delay["s"]))
    yield delay
    handle.remove()


def test_predictions_do_not_wait_for_a_slow_explainer(app, client, slow_lane_delay, monkeypatch):
    monkeypatch.setattr(app.state.predictor.slow_lane, "budget_s", 1.0)
    slow_lane_delay["s"] = 0.3  # Score-CAM makes several passes: over the 1 s budget
    out = {}

    def scorecam():
        out["scorecam"] = client.post("/v1/explain?method=scorecam", files={"file": ("x.png", png(head_slice()))})
        out["scorecam_done"] = time.monotonic()

    t = threading.Thread(target=scorecam)
    t.start()
    time.sleep(0.3)
    r = predict(client, png(head_slice(seed=3)))
    predicted_at = time.monotonic()
    fast = client.post("/v1/explain?method=gradcam", files={"file": ("x.png", png(head_slice()))})
    busy = client.post("/v1/explain?method=ig", files={"file": ("x.png", png(head_slice()))})
    t.join()
    assert r.status_code == 200 and fast.status_code == 200
    assert predicted_at < out["scorecam_done"]  # answered while Score-CAM was still running
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "slow_method_busy"
    assert int(busy.headers["retry-after"]) > 0
    assert out["scorecam"].status_code == 503, out["scorecam"].text
    assert out["scorecam"].json()["error"]["code"] == "explain_timeout"
    assert "time budget of 1 s" in out["scorecam"].json()["error"]["message"]


def test_slow_explainer_within_its_budget_answers(client, slow_lane_delay):
    slow_lane_delay["s"] = 0.0
    r = client.post("/v1/explain?method=scorecam", files={"file": ("x.png", png(head_slice()))})
    assert r.status_code == 200, r.text
    assert r.json()["explanation"]["method"] == "scorecam"


# -- response models are what is sent ----------------------------------------------------------------

def _undeclared(value, schema: dict, spec: dict, where: str) -> list[str]:
    """Keys present in value that the OpenAPI schema does not declare, recursively."""
    while "$ref" in schema or "allOf" in schema or "anyOf" in schema:
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        elif "allOf" in schema:
            schema = schema["allOf"][0]
        else:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = options[0] if options else {}
    out = []
    if isinstance(value, dict) and "properties" in schema:
        for k, v in value.items():
            if k not in schema["properties"]:
                out.append(f"{where}.{k}")
            else:
                out += _undeclared(v, schema["properties"][k], spec, f"{where}.{k}")
    elif isinstance(value, list) and "items" in schema:
        for v in value[:2]:
            out += _undeclared(v, schema["items"], spec, f"{where}[]")
    return out


def test_every_key_sent_is_declared(client):
    spec = client.get("/openapi.json").json()

    def schema_of(path, method="post"):
        return spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    body = client.post("/v1/explain", files={"file": ("x.png", png(head_slice()))}).json()
    assert {"focus", "concentration"} <= set(body["explanation"]["attention"])
    assert _undeclared(body, schema_of("/v1/explain"), spec, "explain") == []
    assert _undeclared(predict(client, png(head_slice())).json(), schema_of("/v1/predict"), spec, "predict") == []
    assert _undeclared(client.get("/v1/model").json(), schema_of("/v1/model", "get"), spec, "model") == []
    assert _undeclared(client.get("/health").json(), schema_of("/health", "get"), spec, "health") == []


# -- 2. a deleted audit database ---------------------------------------------------------------------

def test_deleted_audit_database_is_recreated_and_no_row_is_lost(model_path, tmp_path, caplog):
    db = tmp_path / "audit.sqlite"
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{db}"))
    with TestClient(app) as c:
        assert predict(c, png(head_slice())).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        with caplog.at_level(logging.ERROR, logger="tumorlens.serve"):
            r = predict(c, png(head_slice(seed=1)))
        assert r.status_code == 200
        assert "deleted" in caplog.text and "re-created" in caplog.text
        health = c.get("/health").json()
    assert health["status"] == "degraded" and "audit database" in health["problems"][0]
    with sqlite3.connect(db) as con:  # the row is in the file on disk, not in the deleted inode
        ids = [row[0] for row in con.execute("select request_id from tumorlens_predictions")]
    assert ids == [r.json()["request_id"]]


def test_replaced_audit_database_is_reopened(model_path, tmp_path):
    db = tmp_path / "audit.sqlite"
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{db}"))
    with TestClient(app) as c:
        assert predict(c, png(head_slice())).status_code == 200
        backup = tmp_path / "backup.sqlite"
        with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(backup, db)  # restored from a backup: a new inode
        r = predict(c, png(head_slice(seed=2)))
    assert r.status_code == 200
    with sqlite3.connect(db) as con:
        n = con.execute("select count(*) from tumorlens_predictions").fetchone()[0]
    assert n == 2


# -- 3. decode memory budget ---------------------------------------------------------------------------

def rgba16_png(side: int) -> bytes:
    import cv2

    a = np.zeros((side, side, 4), np.uint16)
    a[..., 3] = 65535
    return cv2.imencode(".png", a)[1].tobytes()


def test_decode_estimate_comes_from_the_header():
    assert estimate_decode_bytes(rgba16_png(2048)) >= 2048 * 2048 * 29  # measured peak per pixel
    assert estimate_decode_bytes(b"\x89PNG\r\n\x1a\n garbage") < 8 * 1024 * 1024


def test_decode_budget_queues_refuses_and_times_out():
    budget = DecodeBudget(100, wait_s=0.3)
    with pytest.raises(ServiceError) as err:
        with budget.hold(101):
            pass
    assert err.value.status == 413
    order = []

    def second():
        with budget.hold(60):
            order.append("second")

    with budget.hold(60):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.1)
        order.append("first done")
    t.join()
    assert order == ["first done", "second"] and budget.peak == 60
    with budget.hold(60):
        with pytest.raises(ServiceError) as err:
            with budget.hold(60):
                pass
    assert err.value.status == 503 and err.value.code == "decoder_busy"


def test_upload_over_the_decode_budget_is_413(model_path, tmp_path):
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                                   decode_memory_mb=64))
    with TestClient(app) as c:
        r = predict(c, rgba16_png(2048))
        ok = predict(c, png(head_slice()))
    assert r.status_code == 413 and "decodes at most 64 MB at once" in r.json()["error"]["message"]
    assert ok.status_code == 200


def test_gzip_whose_nifti_header_asks_too_much_is_refused_before_inflating(model_path, tmp_path):
    import gzip

    import nibabel as nib

    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)).header
    header.set_data_shape((1024, 1024, 512))  # 2 GB of float32 claimed
    bomb = gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 30_000_000)
    from tumorlens.serve.upload import unwrap

    with pytest.raises(ServiceError, match="NIfTI header") as err:  # the gzip reader alone refuses it
        unwrap(bomb, max_decompressed=512 * 1024 * 1024)
    assert err.value.status == 413
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    with TestClient(app) as c:  # and the service, from the same header, before any decoding
        r = predict(c, bomb)
    assert r.status_code == 413 and "7,373 MB" in r.json()["error"]["message"]


# -- 6. keys file ------------------------------------------------------------------------------------

def test_keys_file_that_is_not_utf8_exits_2_with_a_message(model_path, tmp_path):
    from typer.testing import CliRunner

    from tumorlens.cli import app as cli

    keys = tmp_path / "keys.txt"
    keys.write_bytes(b"good-key-123456\n\xff\xfe\x00bad\n")
    result = CliRunner().invoke(cli, ["serve", "--model", str(model_path), "--api-keys-file", str(keys),
                                      "--db", f"sqlite:///{tmp_path / 'a.sqlite'}"])
    assert result.exit_code == 2
    assert "not UTF-8" in result.output and "Traceback" not in result.output


# -- 7. the public model card --------------------------------------------------------------------------

def test_model_card_has_no_paths_and_no_training_hashes(client):
    r = client.get("/v1/model")
    text = r.text
    assert "/srv/secret" not in text and "runs/x" not in text and "d2693f0e39693435" not in text
    card = r.json()
    assert "train_phash" not in card["provenance"]
    assert card["provenance"]["dataset"] == "brain-data" and card["provenance"]["n_train"] == 12
    assert card["provenance"]["config"] == {"epochs": 3, "lr": 0.001}
    assert "Trained on `brain-data`" in card["card_markdown"]


def test_provenance_stays_in_the_checkpoint(model_path):
    assert load_model(model_path).provenance["train_phash"] == ["d2693f0e39693435", "c43a3b396d707265"]


# -- 8. the smaller points -----------------------------------------------------------------------------

def multipart_body(parts: list[tuple[str, bytes]], close: bool = True) -> tuple[bytes, dict]:
    b = "b0undary"
    out = b"".join(f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n\r\n'.encode()
                   + data + b"\r\n" for name, data in parts)
    if close:
        out += f"--{b}--\r\n".encode()
    return out, {**KEY, "Content-Type": f"multipart/form-data; boundary={b}"}


def test_second_file_part_is_refused(client):
    body, headers = multipart_body([("file", png(head_slice())), ("file", png(head_slice(seed=1)))])
    r = client.post("/v1/predict", content=body, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "multiple_files"


def test_missing_closing_boundary_is_refused(client):
    body, headers = multipart_body([("file", png(head_slice()))], close=False)
    r = client.post("/v1/predict", content=body, headers=headers)
    assert r.status_code == 400 and "closing boundary" in r.json()["error"]["message"]
    body, headers = multipart_body([("file", png(head_slice()))])
    assert client.post("/v1/predict", content=body, headers=headers).status_code == 200


def test_head_on_health_and_page(client):
    for path in ("/health", "/"):
        r = client.head(path)
        assert r.status_code == 200 and r.content == b"", path


def test_error_messages_carry_no_memory_address(client):
    r = predict(client, b"\x89PNG\r\n\x1a\n" + b"\x07" * 200)
    assert r.status_code == 422
    assert "0x" not in r.text and " object at " not in r.text
    assert clean_message("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c9d30>") == \
        "cannot identify image file <BytesIO>"


def test_security_headers(client):
    r = predict(client, png(head_slice()))
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    err = predict(client, b"")
    assert err.headers["cache-control"] == "no-store"
    docs = client.get("/docs")
    csp = docs.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "'sha256-" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert client.get("/health").headers["x-content-type-options"] == "nosniff"


def test_openapi_declares_the_api_key_scheme(client):
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"ApiKey": []}]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_model_thread_timeout_is_503(model_path, tmp_path):
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                                   model_timeout_s=0.2))
    replica = app.state.predictor.runner.replicas[0]
    real = replica.logits
    replica.logits = lambda x: (time.sleep(1.0), real(x))[1]
    with TestClient(app) as c:
        r = predict(c, png(head_slice()))
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_busy"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death is the point
def test_dead_model_thread_is_restarted_and_reported(model_path):
    model = load_model(model_path)
    calls = {"n": 0}

    def logits(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("a fault that ends the thread")
        return eager_logits(model.net)(x)

    runner = ModelRunner([Replica(model, logits)], max_batch=4, wait_ms=0)
    x = model.prepare([head_slice()])
    with pytest.raises(SystemExit):
        runner.run(x, timeout=30)
    for _ in range(100):
        if runner.alive_threads() == 0:
            break
        time.sleep(0.05)
    assert runner.alive_threads() == 0
    out = runner.run(x, timeout=30)  # a new thread picks the job up
    assert out.probabilities.shape == (1, len(CLASSES)) and runner.restarts == 1
    runner.close()


# -- 5. pictures that are not brain MRI get a warning ------------------------------------------------

def grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2GRAY)


def xray_on_dark_background() -> np.ndarray:
    import cv2

    from serve_support import chest_xray

    canvas = np.zeros((400, 400), np.uint8)
    canvas[60:340, 60:340] = cv2.resize(chest_xray(256), (280, 280))
    return canvas


def non_mri_pictures() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(0)
    return {"grey flower photograph": grey(load_sample_image("flower.jpg")),
            "dark noise": (rng.random((256, 256)) ** 3 * 255).astype(np.uint8),
            "chest X-ray on a dark background": xray_on_dark_background()}


@pytest.mark.parametrize("name", ["grey flower photograph", "dark noise", "chest X-ray on a dark background"])
def test_non_mri_pictures_get_no_class_and_a_warning(client, name):
    r = predict(client, png(non_mri_pictures()[name]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "out_of_distribution" and body["predicted_class"] is None, body
    assert any(w["code"] == "unlike_training_data" and "brain MRI" in w["message"] for w in body["warnings"])


def test_head_slices_pass_the_head_check():
    from tumorlens.inputcheck.rules import check_rules as check_input

    for seed in range(5):
        for tumor in (True, False):
            check = check_input(head_slice(160, tumor=tumor, seed=seed).astype(np.float32))
            assert check.ok, check.findings
