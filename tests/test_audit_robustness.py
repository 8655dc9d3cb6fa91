"""The robustness check: a model that reads brightness fails it, one that reads shape passes."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.audit.config import AuditConfig
from tumorlens.audit.checks.robustness import (
    DROP_PASS,
    DROP_WARN,
    THRESHOLDS,
    RobustnessCheck,
    status_of,
    stratified_subset,
)
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import TumorModel

SIZE = 96
RECIPE = PreprocessRecipe(size=SIZE, clip_low=0.0, clip_high=100.0)
CLASSES = ["oval", "round"]


def heads(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Display images of a head-like ellipse: 'oval' heads are elongated AND darker inside,
    'round' heads round AND brighter (a dataset where brightness and shape both tell the class,
    as glioma's brightness does in the Kaggle set)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    out, truth = [], []
    for i in range(n):
        c = i % 2
        a = SIZE * rng.uniform(0.30, 0.36)
        b = a * (rng.uniform(0.58, 0.68) if c == 0 else rng.uniform(0.94, 1.0))
        t = rng.uniform(-0.5, 0.5)
        cy, cx = SIZE / 2 + rng.uniform(-3, 3), SIZE / 2 + rng.uniform(-3, 3)
        v = np.cos(t) * (yy - cy) - np.sin(t) * (xx - cx)
        u = np.sin(t) * (yy - cy) + np.cos(t) * (xx - cx)
        r = np.sqrt((v / a) ** 2 + (u / b) ** 2)
        img = np.zeros((SIZE, SIZE), np.float32)
        img[r <= 1] = 1.0  # bright rim (scalp)
        inner = (0.45 if c == 0 else 0.62) + rng.normal(0, 0.02, img.shape)
        img[r <= 0.9] = inner[r <= 0.9]
        out.append(RECIPE.display(img))
        truth.append(c)
    return np.stack(out), np.array(truth)


def head_brightness(x: torch.Tensor) -> torch.Tensor:
    img = x * RECIPE.std + RECIPE.mean  # back to display [0, 1]
    head = img > 0.15
    return (img * head).sum(dim=(1, 2, 3)) / head.sum(dim=(1, 2, 3)).clamp(min=1)


class ReadsBrightness(nn.Module):
    """Mean intensity inside the head, against a threshold fitted between the two classes."""

    def __init__(self, images, truth):
        super().__init__()
        b = head_brightness(torch.from_numpy(RECIPE.normalize(images)[:, None].copy())).numpy()
        self.threshold = float((b[truth == 0].mean() + b[truth == 1].mean()) / 2)

    def forward(self, x):
        m = head_brightness(x) - self.threshold
        return torch.stack([-40 * m, 40 * m], dim=1)


class ReadsShape(nn.Module):
    """Aspect ratio of the head (OpenCV: Otsu threshold, largest component, second moments)."""

    def forward(self, x):
        logits = []
        for im in x[:, 0].numpy():
            u8 = cv2.normalize(im, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            _, binary = cv2.threshold(cv2.GaussianBlur(u8, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
            if n > 1:
                largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
                blob = (labels == largest).astype(np.uint8)
                # fill the head's interior so the ratio is the outline's, whatever the inside looks like
                contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                m = cv2.moments(max(contours, key=cv2.contourArea))
                cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / max(m["m00"], 1)
                ev = np.linalg.eigvalsh(cov)
                ratio = float(np.sqrt(max(ev[0], 0) / max(ev[1], 1e-9)))
            else:
                ratio = 0.0
            logits.append([-(ratio - 0.8) * 20, (ratio - 0.8) * 20])
        return torch.tensor(logits, dtype=torch.float32)


def run_check(net, images, truth, n=None, keep=None, chunk=24, tmp_path=None):
    model = TumorModel(net=net, arch="test", classes=CLASSES, recipe=RECIPE)
    probs = model.probabilities(torch.from_numpy(RECIPE.normalize(images)[:, None].copy()))
    records = [SimpleNamespace(columns={}, display=(im * 255).astype(np.uint8)) for im in images]
    ctx = SimpleNamespace(model=model, truth=truth, n=len(truth), keep=keep, records=records, classes=CLASSES,
                          config=AuditConfig(robustness_n=n, seed=0, batch_size=32))
    check = RobustnessCheck()
    check.start(ctx)
    for s in range(0, len(truth), chunk):
        idx = np.arange(s, min(s + chunk, len(truth)))
        part = SimpleNamespace(start=s, indices=idx, display=images[idx], truth=truth[idx], probs=probs[idx],
                               samples=None)
        check.on_chunk(ctx, SimpleNamespace(parts={check.name: check.map_chunk(ctx, part)}))
    result = check.finish(ctx)
    figs = check.figures(result, ctx, tmp_path) if tmp_path is not None else []
    return result, check.verdict(result), ctx, figs


@pytest.fixture(scope="module")
def data():
    return heads(48)


def test_thresholds_are_the_issue_and_printed_from_the_constants():
    assert (DROP_PASS, DROP_WARN) == (0.02, 0.05)
    assert "within 2 points" in THRESHOLDS["robustness"] and "warn within 5" in THRESHOLDS["robustness"]
    assert [status_of(d) for d in (0.0, 0.02, 0.021, 0.05, 0.051, None)] == ["pass", "pass", "warn", "warn", "fail",
                                                                             "n/a"]


def test_subset_is_seeded_stratified_and_whole_when_small():
    truth = np.array([0] * 70 + [1] * 20 + [2] * 10)
    sub = stratified_subset(truth, 20, 0)
    assert len(sub) == 20 and np.all(np.diff(sub) > 0)
    assert np.bincount(truth[sub]).tolist() == [14, 4, 2]
    np.testing.assert_array_equal(sub, stratified_subset(truth, 20, 0))
    assert not np.array_equal(sub, stratified_subset(truth, 20, 1))
    assert len(stratified_subset(truth, None, 0)) == 100 and len(stratified_subset(truth, 500, 0)) == 100
    assert set(truth[stratified_subset(truth, 3, 0)]) == {0, 1, 2}


def test_a_model_that_reads_brightness_fails(data, tmp_path):
    images, truth = data
    result, verdict, ctx, figs = run_check(ReadsBrightness(images, truth), images, truth, tmp_path=tmp_path)
    s = result.section
    assert s["clean"]["accuracy"] == 1.0
    by = {m["name"]: m for m in s["shifts"]}
    # gamma 0.6 brightens the dark ovals past the threshold, gamma 1.6 darkens the round heads below it
    assert by["gamma 0.6"]["accuracy"] <= 0.6 and by["gamma 0.6"]["per_class"]["oval"]["accuracy"] <= 0.2
    assert by["gamma 1.6"]["per_class"]["round"]["accuracy"] <= 0.2 and by["gamma 1.6"]["per_class"]["oval"]["accuracy"] == 1
    assert verdict.status == "fail" and "points" in verdict.detail
    assert s["worst_drop"] > DROP_WARN
    assert {f.key for f in figs} == {"robustness", "robustness_examples"}
    assert all(f.path.is_file() and f.path.stat().st_size > 1000 for f in figs)


def test_a_model_that_reads_shape_passes(data):
    images, truth = data
    result, verdict, _, _ = run_check(ReadsShape(), images, truth)
    s = result.section
    assert s["clean"]["accuracy"] == 1.0
    assert verdict.status == "pass", verdict.detail
    assert all(m["accuracy"] >= 1.0 - DROP_PASS for m in s["shifts"])
    assert len(s["shifts"]) == 14


def test_summary_section_subset_and_leakage_free(data):
    images, truth = data
    keep = np.arange(len(truth)) % 3 != 0
    result, verdict, ctx, _ = run_check(ReadsBrightness(images, truth), images, truth, n=30, keep=keep)
    s = result.to_summary()["robustness"]
    assert s["n"] == 30 and s["n_audited"] == 48 and "30 of 48" in s["subset"]
    for m in s["shifts"]:
        assert {"name", "params", "accuracy", "macro_f1", "changed", "per_class", "leakage_free"} <= set(m)
        assert m["leakage_free"]["n"] == int(keep[result.subset].sum())
    assert s["leakage_free"]["n"] == int(keep[result.subset].sum()) and "leakage-free" in verdict.detail
    assert s["cost"]["model_passes"] == 30 * 14  # the clean pass came from the audit
    assert s["cost"]["ratio_total_to_model"] >= 1.0


def test_robustness_n_zero_switches_it_off(data):
    images, truth = data
    result, verdict, _, figs = run_check(ReadsBrightness(images, truth), images, truth, n=0)
    assert verdict.status == "n/a" and result.section["shifts"] == []


def test_robustness_n_option_is_checked():
    from tumorlens.audit.commands import _robustness_n
    from tumorlens.audit.config import AuditConfig, AuditError

    assert _robustness_n("all") is None and _robustness_n("0") == 0 and _robustness_n("300") == 300
    with pytest.raises(AuditError, match="number of images or 'all'"):
        _robustness_n("many")
    with pytest.raises(AuditError, match="robustness-n"):
        AuditConfig(robustness_n=-1)
