"""Monitoring (issue 29): features in the audit trail, the reference profile, drift and estimated
accuracy over windows, GET /v1/monitoring and `tumorlens monitor`. Synthetic slices, a tiny model."""

from __future__ import annotations

import datetime as dt
import sqlite3

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_support import API_KEY, CLASSES, make_checkpoint, png
from tumorlens.cli import app as cli_app
from tumorlens.models.checkpoint import load_model
from tumorlens.monitoring.drift import Thresholds, compare_window
from tumorlens.monitoring.html import write_monitoring_report
from tumorlens.monitoring.reference import ReferenceProfile, stored_reference, store_reference
from tumorlens.serve.app import create_app
from tumorlens.serve.audit_trail import AuditTrail
from tumorlens.serve.settings import ServeSettings

KEY = {"X-API-Key": API_KEY}
WINDOW = 40


def varied_slice(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """A head-like uint8 slice whose shape, contrast and noise vary from slice to slice."""
    img = np.zeros((size, size), np.float32)
    c = (size // 2 + int(rng.integers(-4, 5)), size // 2 + int(rng.integers(-4, 5)))
    axes = (int(size * rng.uniform(0.30, 0.38)), int(size * rng.uniform(0.38, 0.45)))
    cv2.ellipse(img, c, axes, 0, 0, 360, float(rng.uniform(170, 220)), -1)
    cv2.ellipse(img, c, (axes[0] - size // 20, axes[1] - size // 20), 0, 0, 360, float(rng.uniform(90, 130)), -1)
    if rng.random() < 0.6:
        cv2.circle(img, (c[0] + int(rng.integers(-15, 15)), c[1] + int(rng.integers(-15, 15))),
                   int(rng.integers(5, 12)), float(rng.uniform(200, 240)), -1)
    img += rng.normal(0, 5, img.shape) * (img > 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def gamma(img: np.ndarray, g: float) -> np.ndarray:
    return np.clip(255 * (img / 255.0) ** g, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service whose reference was computed at start-up (serve --reference) from synthetic slices."""
    tmp = tmp_path_factory.mktemp("monitoring")
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (tmp / "ref" / cls).mkdir(parents=True)
        for k in range(15):
            (tmp / "ref" / cls / f"{k}.png").write_bytes(png(varied_slice(rng)))
    model = make_checkpoint(tmp / "model.pt", size=48)
    app = create_app(ServeSettings(model_path=model, api_keys=(API_KEY,), db_url=f"sqlite:///{tmp / 'audit.sqlite'}",
                                   segmenter=False, reference_data=tmp / "ref"))
    with TestClient(app, headers=KEY) as client:
        yield app, client, tmp


def replay(client, images) -> None:
    for img in images:
        r = client.post("/v1/predict", files={"file": ("x.png", png(img), "image/png")})
        assert r.status_code == 200, r.text


def test_drift_is_flagged_on_a_shifted_replay_and_not_on_an_unshifted_one(served):
    app, client, tmp = served
    ref = app.state.service.reference
    assert ref.n == 60 and ref.accuracy is not None and "all 60 slices" in ref.source
    rng = np.random.default_rng(1)
    replay(client, [varied_slice(rng) for _ in range(WINDOW)])
    clean = client.get("/v1/monitoring", params={"window": WINDOW}).json()
    assert clean["status"] == "ok" and clean["alerts"] == [], clean["alerts"]
    window = clean["windows"][-1]
    assert window["n"] == WINDOW and {f["feature"] for f in window["features"]} >= {"head_mean", "head_p90", "entropy"}
    assert abs(window["expected_accuracy"] - clean["reference"]["expected_accuracy"]) < 0.05

    replay(client, [gamma(varied_slice(rng), 2.2) for _ in range(WINDOW)])
    shifted = client.get("/v1/monitoring", params={"window": WINDOW}).json()
    assert len(shifted["windows"]) == 2 and shifted["status"] == "alert"
    drifting = {f["feature"] for f in shifted["windows"][-1]["features"] if f["alert"]}
    assert drifting & {"head_mean", "head_p10", "head_p90"}, shifted["alerts"]
    assert shifted["windows"][0]["alerts"] == []  # the earlier, unshifted window stays clean
    page = write_monitoring_report(shifted, tmp / "report")[0].read_text()  # what `tumorlens monitor` writes
    assert "data:image/png;base64," in page and "input drift" in page


def test_the_monitoring_endpoint_needs_a_key(served):
    app, _, _ = served
    with TestClient(app) as anonymous:
        assert anonymous.get("/v1/monitoring").status_code == 401
        assert anonymous.get("/v1/monitoring", headers={"X-API-Key": "not-the-key-xx"}).status_code == 401


def test_an_empty_database_gives_an_empty_report(tmp_path):
    model = make_checkpoint(tmp_path / "model.pt", size=48)
    db = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    app = create_app(ServeSettings(model_path=model, auth=False, db_url=db, segmenter=False))
    with TestClient(app) as c:
        body = c.get("/v1/monitoring").json()
    assert body["windows"] == [] and body["alerts"] == [] and body["status"] == "no data"
    assert body["reference"] is None and "no reference profile" in body["notes"][0]
    out = tmp_path / "report"
    result = CliRunner().invoke(cli_app, ["monitor", "--db", db, "--out", str(out), "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert "no data" in result.output and (out / "monitoring.html").is_file()
    missing = CliRunner().invoke(cli_app, ["monitor", "--db", f"sqlite:///{tmp_path / 'typo.sqlite'}", "--out", str(out)])
    assert missing.exit_code == 2 and "no audit database" in missing.output


def test_a_database_from_before_monitoring_still_opens(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the table as the first release wrote it: no features column
        con.execute("""CREATE TABLE tumorlens_predictions (id INTEGER PRIMARY KEY, request_id VARCHAR(32),
            created_at DATETIME, endpoint VARCHAR(16), model_version VARCHAR(80), image_sha256 VARCHAR(64),
            input_format VARCHAR(8), slice_index INTEGER, status VARCHAR(24), predicted_class VARCHAR(64),
            confidence FLOAT, probabilities JSON, findings JSON, method VARCHAR(24), api_key_id VARCHAR(12))""")
        con.execute("INSERT INTO tumorlens_predictions VALUES (1, 'old', ?, 'predict', 'm-1', ?, 'PNG', NULL, 'ok', "
                    "'glioma', 0.9, NULL, NULL, NULL, NULL)", (dt.datetime(2026, 1, 1).isoformat(" "), "a" * 64))
    trail = AuditTrail(f"sqlite:///{path}")
    old = trail.records()
    assert len(old) == 1 and old[0]["request_id"] == "old" and old[0]["features"] is None
    trail.record([{"request_id": "new", "endpoint": "predict", "model_version": "m-1", "image_sha256": "b" * 64,
                   "input_format": "PNG", "status": "ok", "predicted_class": "glioma", "confidence": 0.8,
                   "features": {"head_mean": 0.4}}])
    rows, others = trail.monitored("m-1", 100)
    assert [r["request_id"] for r in rows] == ["new"] and others == 0  # the old row has nothing to monitor
    trail.close()


def test_the_reference_is_stored_in_the_checkpoint_and_old_checkpoints_load(tmp_path):
    path = make_checkpoint(tmp_path / "model.pt", size=48)
    assert stored_reference(path) is None
    profile = ReferenceProfile("synthetic", 3, {"confidence": [0.9, 0.8, 0.7]}, {c: 0 for c in CLASSES}, 0, 0.66)
    store_reference(path, profile)
    assert stored_reference(path) == profile
    assert load_model(path).classes == CLASSES  # loaders that do not know the key ignore it


def test_estimated_accuracy_alerts_when_confidence_falls():
    rng = np.random.default_rng(0)
    ref_conf = rng.uniform(0.8, 1.0, 300)
    ref = ReferenceProfile("synthetic", 300, {"confidence": ref_conf.tolist()},
                           {"a": 150, "b": 150}, 0, float(np.mean(rng.random(300) < ref_conf)))

    def rows(conf):
        return [{"confidence": float(c), "predicted_class": "ab"[i % 2], "status": "ok", "features": {"check_ok": True}}
                for i, c in enumerate(conf)]

    same = compare_window(rows(rng.uniform(0.8, 1.0, 200)), ref, Thresholds())
    lower = compare_window(rows(rng.uniform(0.7, 0.95, 200)), ref, Thresholds())
    assert not same["accuracy"]["alert"] and same["alerts"] == []
    assert lower["accuracy"]["alert"] and abs(lower["accuracy"]["estimated"] - 0.825) < 0.02
