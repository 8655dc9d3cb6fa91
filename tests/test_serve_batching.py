"""Micro-batching (serve/batching.py) and the frozen prediction pass (serve/frozen.py): requests
that share a model pass must get exactly the answers they would get alone, each its own."""

from __future__ import annotations

import asyncio
import base64
import logging

import cv2
import httpx
import numpy as np
import pytest
import torch

from serve_support import CLASSES, head_slice, png
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.explain import explain
from tumorlens.models.checkpoint import load_model, save_checkpoint
from tumorlens.models.registry import build_model
from tumorlens.serve.app import create_app
from tumorlens.serve.batching import ModelRunner, Replica
from tumorlens.serve.frozen import eager_logits, frozen_logits
from tumorlens.serve.settings import ServeSettings


def spread_checkpoint(path):
    """An untrained simple_cnn with a loud classifier: every image gets its own probabilities."""
    torch.manual_seed(0)
    net = build_model("simple_cnn", len(CLASSES))
    with torch.no_grad():
        net.classifier.weight.mul_(40.0)
    return save_checkpoint(path, net, "simple_cnn", CLASSES, PreprocessRecipe(size=64))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(spread_checkpoint(tmp_path_factory.mktemp("m") / "m.pt"))


def varied_head(k: int) -> np.ndarray:
    """A head slice with bright blobs in places that differ per k (distinct answers and heatmaps)."""
    img = head_slice(96, tumor=False, seed=k)
    rng = np.random.default_rng(k)
    for _ in range(3):
        cx, cy = rng.integers(30, 66, 2)
        cv2.circle(img, (int(cx), int(cy)), int(rng.integers(4, 12)), int(rng.integers(150, 255)), -1)
    return img


def inputs(model, n: int) -> list[torch.Tensor]:
    return [model.prepare([varied_head(k)]) for k in range(n)]


def test_frozen_pass_matches_the_network(model):
    x = torch.cat(inputs(model, 5))
    with torch.inference_mode():
        expected = model.net.eval()(x)
    assert torch.allclose(frozen_logits(model)(x), expected, atol=1e-5)


def test_untraceable_network_falls_back_to_the_network(model, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("cannot trace this")
    monkeypatch.setattr(torch.jit, "trace", broken)
    with caplog.at_level(logging.WARNING, logger="tumorlens.serve"):
        logits = frozen_logits(model)
    assert "tracing failed: cannot trace this" in caplog.text
    x = torch.cat(inputs(model, 2))
    with torch.inference_mode():
        assert torch.equal(logits(x), model.net(x))


def test_a_batch_gives_every_job_its_own_answer(model):
    """Predictions, Grad-CAM for the top class, Grad-CAM for a chosen class and a method that needs
    a separate pass (saliency), all in one batch: each equals the job run alone."""
    xs = inputs(model, 8)
    jobs = [(None, None), ("gradcam", None), ("gradcam", 2), (None, None), ("saliency", None), ("gradcam", 0),
            ("gradcam", None), ("saliency", 3)]
    runner = ModelRunner([Replica(model, frozen_logits(model))], max_batch=16, wait_ms=400)
    try:
        futures = [runner.submit(x, method, target) for x, (method, target) in zip(xs, jobs)]
        outs = [f.result(timeout=60) for f in futures]
    finally:
        runner.close()
    assert runner.batch_sizes == [8]  # all in one pass
    alone = [model.probabilities(x) for x in xs]
    assert len({tuple(p[0].round(4)) for p in alone}) == 8  # the images really differ
    for x, (method, target), out, p in zip(xs, jobs, outs, alone):
        np.testing.assert_allclose(out.probabilities, p, atol=1e-5)
        if method is None:
            assert out.heatmaps is None
            continue
        t = int(p.argmax()) if target is None else target
        assert out.targets.tolist() == [t]
        single = explain(model, x, method=method, targets=[t]).heatmaps
        np.testing.assert_allclose(out.heatmaps, single, atol=1e-4)


def test_a_failing_job_does_not_fail_the_others(model):
    good = inputs(model, 3)
    bad = torch.zeros(1, 3, 64, 64)  # three channels: the network cannot take it
    runner = ModelRunner([Replica(model, eager_logits(model.net))], max_batch=16, wait_ms=300)
    try:
        futures = [runner.submit(good[0]), runner.submit(bad), runner.submit(good[1], "gradcam"),
                   runner.submit(good[2])]
        with pytest.raises(RuntimeError):
            futures[1].result(timeout=60)
        for f, x in zip([futures[0], futures[2], futures[3]], good):
            np.testing.assert_allclose(f.result(timeout=60).probabilities, model.probabilities(x), atol=1e-5)
        # the model thread survived: later work is served
        np.testing.assert_allclose(runner.run(good[0]).probabilities, model.probabilities(good[0]), atol=1e-5)
    finally:
        runner.close()


def test_concurrent_requests_get_the_answers_of_sequential_ones(tmp_path):
    """Through the app: 6 predictions and 4 explanations at once share batches, and each response
    is the one the same request gets alone."""
    path = spread_checkpoint(tmp_path / "m.pt")
    # batching is under test, not the input check: the drawn heads it would flag keep their answers
    app = create_app(ServeSettings(model_path=path, auth=False, db_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
                                   workers=1, batch_wait_ms=100, learned_input_check=False))
    images = [png(varied_head(k)) for k in range(6)]
    targets = [None, "meningioma", "glioma", None]

    async def call(c, k, explain_target=False):
        if explain_target:
            q = "" if targets[k] is None else f"?target={targets[k]}"
            r = await c.post(f"/v1/explain{q}", files={"file": ("x.png", images[k])})
        else:
            r = await c.post("/v1/predict", files={"file": ("x.png", images[k])})
        assert r.status_code == 200, r.text
        return r.json()

    async def scenario(together: bool):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            calls = [lambda k=k: call(c, k) for k in range(6)] + [lambda k=k: call(c, k, True) for k in range(4)]
            if together:
                return await asyncio.gather(*(f() for f in calls))
            return [await f() for f in calls]

    sequential = asyncio.run(scenario(False))
    app.state.predictor.runner.batch_sizes.clear()
    concurrent = asyncio.run(scenario(True))
    assert max(app.state.predictor.runner.batch_sizes) > 1  # they did share model passes
    assert len({str(b["probabilities"]) for b in sequential[:6]}) == 6
    for a, b in zip(sequential, concurrent):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=2e-4)
        assert a["predicted_class"] == b["predicted_class"]
    for k, (a, b) in enumerate(zip(sequential[6:], concurrent[6:])):
        ea, eb = a["explanation"], b["explanation"]
        assert ea["target_class"] == eb["target_class"] == (targets[k] or a["predicted_class"])
        ha, hb = (cv2.imdecode(np.frombuffer(base64.b64decode(e["heatmap_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
                  for e in (ea, eb))
        assert np.abs(ha.astype(int) - hb.astype(int)).max() <= 1
        assert ea["attention"] == eb["attention"]
    # one audit row per request, each with its own image
    rows = app.state.audit.records(limit=100)
    assert len(rows) == 20 and len({r["request_id"] for r in rows}) == 20
