"""The service through FastAPI's TestClient (in-process): contracts, auth, audit trail, samples,
model card, docs, the page's assets, error shape, and a responsive event loop."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve_support import API_KEY, head_slice, jpeg, make_checkpoint, mri_slice, nifti, png
from tumorlens.serve.app import create_app
from tumorlens.serve.audit_trail import AuditTrailError
from tumorlens.serve.auth import AuthConfigError
from tumorlens.serve.settings import ServeSettings

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    path = make_checkpoint(tmp / "model.pt", confident_class=3)
    (tmp / "MODEL_CARD.md").write_text("# Test model card\n\nTrained on nothing; for tests only.\n")
    return path


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    (root / "kaggle" / "glioma").mkdir(parents=True)
    (root / "kaggle" / "glioma" / "a.jpg").write_bytes(jpeg(head_slice()))
    (root / "figshare" / "images").mkdir(parents=True)
    (root / "figshare" / "masks").mkdir(parents=True)
    (root / "figshare" / "images" / "7.png").write_bytes(png(head_slice(seed=1)))
    (root / "figshare" / "masks" / "7.png").write_bytes(png(np.zeros((128, 128), np.uint8)))
    (root / "figshare" / "metadata.csv").write_text("index,label,class_name,pid,original_size\n7,1,meningioma,P1,512x512\n")
    return root


@pytest.fixture(scope="module")
def app(model_path, samples_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    return create_app(ServeSettings(model_path=model_path, api_keys=(API_KEY,), db_url=f"sqlite:///{db}",
                                    samples_dir=samples_dir, max_upload_mb=4, workers=2))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, headers=KEY) as c:
        yield c


def predict(client, data: bytes, name="x.png", **kw):
    return client.post("/v1/predict", files={"file": (name, data, "image/png")}, **kw)


def test_prediction_fields(client):
    r = predict(client, png(mri_slice()))
    assert r.status_code == 200
    body = r.json()
    assert body["predicted_class"] == "pituitary" and body["confidence"] > 0.9
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["input"] == {"format": "PNG", "filename": "x.png", "sha256": hashlib.sha256(png(mri_slice())).hexdigest(),
                             "width": 128, "height": 128, "slices": 1}
    assert "not a diagnosis" in body["disclaimer"]


def test_low_confidence_is_flagged(tmp_path):
    path = make_checkpoint(tmp_path / "flat.pt")  # untrained: near-uniform probabilities
    app = create_app(ServeSettings(model_path=path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    with TestClient(app) as c:
        body = predict(c, png(mri_slice())).json()
    assert body["status"] == "uncertain" and body["confidence"] < 0.5
    assert [w["code"] for w in body["warnings"]] == ["low_confidence"]


def test_every_prediction_is_in_the_audit_trail_without_pixels(app, client):
    data = jpeg(mri_slice(seed=5))
    r = predict(client, data, name="y.jpg")
    vol = predict(client, nifti(np.stack([head_slice(64, seed=k) for k in range(3)], axis=2)), name="v.nii")
    rows = app.state.audit.records(request_id=r.json()["request_id"])
    assert len(rows) == 1
    row = rows[0]
    assert row["image_sha256"] == hashlib.sha256(data).hexdigest()
    assert row["predicted_class"] == "pituitary" and row["model_version"] == r.json()["model"]["version"]
    assert row["endpoint"] == "predict" and row["api_key_id"] and API_KEY not in str(row)
    vol_rows = app.state.audit.records(request_id=vol.json()["request_id"])
    assert sorted(x["slice_index"] for x in vol_rows) == [0, 1, 2]
    # no column can hold pixels: every stored value is short
    db_path = app.state.settings.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as con:
        longest = con.execute("select max(length(probabilities)), max(length(image_sha256)) from tumorlens_predictions").fetchone()
    assert longest[0] < 200 and longest[1] == 64


def test_refusals_are_audited_too(app, client):
    r = predict(client, png(np.zeros((64, 64), np.uint8)))
    assert r.status_code == 422
    rows = app.state.audit.records(request_id=r.json()["error"]["request_id"])
    assert rows and rows[0]["status"] == "refused" and rows[0]["predicted_class"] is None


def test_audit_failure_withholds_the_answer(app, client, monkeypatch):
    def broken(rows):
        raise AuditTrailError("disk full")
    monkeypatch.setattr(app.state.audit, "record", broken)
    r = predict(client, png(head_slice()))
    assert r.status_code == 503 and r.json()["error"]["code"] == "audit_trail_unavailable"


def test_uploads_never_touch_temporary_files(client, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("an upload was spooled to a temporary file")
    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, forbidden)
    big = png((np.random.default_rng(0).random((1200, 1200)) * 255).astype(np.uint8))  # > 1 MB: would spool
    assert len(big) > 1_100_000
    r = predict(client, big)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("headers,code", [({}, "missing_api_key"), ({"X-API-Key": "not-the-key-xx"}, "invalid_api_key")])
def test_every_v1_endpoint_needs_a_key(app, headers, code):
    with TestClient(app) as c:
        for method, path in (("GET", "/v1/samples"), ("GET", "/v1/model"), ("GET", "/v1/samples/x"),
                             ("POST", "/v1/predict"), ("POST", "/v1/explain")):
            r = c.request(method, path, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == code, (path, r.text)
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200


def test_keys_from_environment_and_file(model_path, tmp_path, monkeypatch):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# operators\nfile-key-abcdefgh\n")
    monkeypatch.setenv("TUMORLENS_API_KEYS", "env-key-1234567, env-key-7654321")
    app = create_app(ServeSettings(model_path=model_path, api_keys_file=keyfile, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    with TestClient(app) as c:
        for key in ("file-key-abcdefgh", "env-key-1234567", "env-key-7654321"):
            assert c.get("/v1/model", headers={"X-API-Key": key}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "env-key-1234567,"}).status_code == 401


def test_auth_without_keys_refuses_to_start(model_path, tmp_path, monkeypatch):
    monkeypatch.delenv("TUMORLENS_API_KEYS", raising=False)
    with pytest.raises(AuthConfigError, match="--no-auth"):
        create_app(ServeSettings(model_path=model_path, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))


def test_any_database_url_and_a_clear_error_for_a_bad_one(model_path, tmp_path):
    with pytest.raises(AuditTrailError, match="cannot open the audit database"):
        create_app(ServeSettings(model_path=model_path, auth=False, db_url="nosuchdb://user:secret@host/x"))
    try:
        create_app(ServeSettings(model_path=model_path, auth=False, db_url="nosuchdb://user:secret@host/x"))
    except AuditTrailError as exc:
        assert "secret" not in str(exc)  # passwords never reach a message


def test_samples_list_and_fetch(client, samples_dir):
    listed = client.get("/v1/samples").json()
    names = {s["name"]: s for s in listed}
    assert set(names) == {"kaggle-glioma-a", "figshare-meningioma-7"}  # masks are not samples
    assert names["figshare-meningioma-7"]["label"] == "meningioma"
    r = client.get(names["kaggle-glioma-a"]["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (samples_dir / "kaggle" / "glioma" / "a.jpg").read_bytes()


@pytest.mark.parametrize("name", ["nope", "..%2F..%2Fetc%2Fpasswd", "kaggle-glioma-a.jpg"])
def test_unknown_sample_is_404(client, name):
    r = client.get(f"/v1/samples/{name}")
    assert r.status_code == 404 and r.json()["error"]["code"] in ("unknown_sample", "not_found")


def test_bundled_samples_are_listed_by_default(model_path, tmp_path):
    app = create_app(ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    with TestClient(app) as c:
        labels = {s["label"] for s in c.get("/v1/samples").json()}
    assert {"glioma", "meningioma", "notumor", "pituitary"} <= labels


def test_model_card(client):
    card = client.get("/v1/model").json()
    assert card["name"] == "simple_cnn" and card["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert card["input"]["size"] == 64 and card["metrics"] == {"accuracy": 0.5}
    assert card["card_markdown"].startswith("# Test model card")
    assert "gradcam" in card["service"]["explain_methods"]


def test_docs_and_openapi_are_served_locally(client):
    docs = client.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    for asset in re.findall(r'(?:src|href)="([^"]+)"', docs):
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200, asset
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert {"/v1/explain", "/v1/samples", "/v1/samples/{name}", "/v1/model", "/health"} <= set(spec["paths"])


def test_page_and_its_assets_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and "Research tool, not a diagnosis" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert not re.search(r"https?://", text), asset
    assert not re.search(r"(src|href)=\"https?://", r.text)


def test_unknown_route_and_wrong_method_are_json(client):
    assert client.get("/v2/anything").json()["error"]["code"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_bad_query_parameter_is_a_clean_422(client):
    r = client.post("/v1/explain?alpha=7", files={"file": ("x.png", png(head_slice()))})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "alpha" in r.json()["error"]["message"]


def test_unexpected_error_is_json_without_trace(app, monkeypatch):
    def boom(decoded):
        raise RuntimeError("secret internal detail /srv/code.py line 7")
    monkeypatch.setattr(app.state.predictor, "predict", boom)
    with TestClient(app, headers=KEY, raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", files={"file": ("x.png", png(head_slice()))})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["error"]["request_id"] in r.json()["error"]["message"]


def test_gzip_bomb_is_stopped(model_path, tmp_path):
    import gzip

    settings = ServeSettings(model_path=model_path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                             max_voxels=100_000)
    with TestClient(create_app(settings)) as c:
        bomb = gzip.compress(b"\0" * 20_000_000)  # 20 MB of zeros in ~20 kB
        r = c.post("/v1/predict", files={"file": ("v.nii.gz", bomb)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "volume_too_large"


def test_event_loop_answers_while_the_model_works(app, monkeypatch):
    """A slow inference runs in a worker thread: /health must not wait for it."""
    real = app.state.predictor.predict

    def slow(decoded):
        time.sleep(1.5)
        return real(decoded)
    monkeypatch.setattr(app.state.predictor, "predict", slow)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=KEY) as c:
            slow_call = asyncio.create_task(c.post("/v1/predict", files={"file": ("x.png", png(head_slice()))}))
            await asyncio.sleep(0.2)
            health = await c.get("/health")
            done_before = slow_call.done()
            return (await slow_call).status_code, health.status_code, done_before

    status, health_status, done_before = asyncio.run(scenario())
    assert status == 200 and health_status == 200
    assert not done_before  # /health answered while the prediction was still running (no wall-clock limit)


def test_each_network_serves_one_batch_at_a_time(app, monkeypatch):
    """CAM hooks live on the network: two batches must never run on one replica at once."""
    predictor = app.state.predictor
    replicas = predictor.runner.replicas
    assert len(replicas) == 2 and replicas[0].model.net is not replicas[1].model.net
    lock = threading.Lock()
    active = {id(r): 0 for r in replicas}
    peak = {"each": 0}

    def counting(replica, real):
        def logits(x):
            with lock:
                active[id(replica)] += 1
                peak["each"] = max(peak["each"], active[id(replica)])
            time.sleep(0.05)
            try:
                return real(x)
            finally:
                with lock:
                    active[id(replica)] -= 1
        return logits

    for replica in replicas:
        monkeypatch.setattr(replica, "logits", counting(replica, replica.logits))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=KEY) as c:
            calls = [c.post("/v1/predict", files={"file": ("x.png", png(head_slice(seed=k)))}) for k in range(8)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(scenario()) == [200] * 8
    assert peak["each"] == 1


def test_serve_command_reports_bad_setup_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tumorlens.cli import app as cli

    monkeypatch.delenv("TUMORLENS_API_KEYS", raising=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    db = f"sqlite:///{tmp_path / 'a.sqlite'}"
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--model", str(bad), "--no-auth", "--db", db])
    assert result.exit_code == 2 and "bad.pt" in result.output and "Traceback" not in result.output
    good = make_checkpoint(tmp_path / "m.pt")
    result = runner.invoke(cli, ["serve", "--model", str(good), "--db", db])
    assert result.exit_code == 2 and "--no-auth" in result.output
