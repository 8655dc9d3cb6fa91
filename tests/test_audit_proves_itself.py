"""The audit must prove itself: on a model trained on clean phantoms every check of where it looks passes (not robustness: it saw no augmentation), on a model trained
with a class marker planted outside the brain it flags the shortcut and the off-target focus.

Both models are small SimpleCNNs (width 8, 64 px) trained for a few seconds with a fixed seed.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tumorlens.audit.runner import AuditConfig, run_audit
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.registry import SimpleCNN

SIZE = 64


@pytest.fixture(scope="module")
def one_thread():
    # On a shared 2-core machine, two torch threads per process thrash; one is several times faster here.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_phantom_model(shortcut, n=240, epochs=12, seed=0) -> TumorModel:
    torch.manual_seed(seed)
    train = make_phantoms(n, size=SIZE, seed=seed, shortcut=shortcut)
    recipe = PreprocessRecipe(size=SIZE)
    x = torch.from_numpy(recipe.batch([s.image for s in train.samples]))
    y = torch.from_numpy(train.label_indices())
    net = SimpleCNN(len(train.classes), width=8)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            b = perm[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    net.eval()
    # arch "simple_cnn": the registry's target layer (features.2) is where Grad-CAM looks
    return TumorModel(net=net, arch="simple_cnn", classes=train.classes, recipe=recipe)


def audit(model, shortcut, out):
    test = make_phantoms(64, size=SIZE, seed=99, shortcut=shortcut)  # unseen phantoms, same shortcut rule
    cfg = AuditConfig(methods=("gradcam",), compare_n=8, sanity_n=2, progress=False)
    return run_audit(model, test, out, cfg)


@pytest.fixture(scope="module")
def clean(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    return audit(train_phantom_model(None), None, out), out


@pytest.fixture(scope="module")
def marker(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("marker")
    return audit(train_phantom_model("marker"), "marker", out), out


def check(summary, name):
    return next(c for c in summary["verdict"]["checks"] if c["name"] == name)


def test_clean_model_passes(clean):
    s, out = clean
    assert s["classification"]["all"]["accuracy"] > 0.5  # it learned something from the tumors
    assert not s["shortcut"]["flagged"]
    assert check(s, "shortcut")["status"] == "pass"
    assert s["attention"]["all"]["share_correct_focused_outside_brain"] < 0.10
    assert check(s, "attention")["status"] == "pass"
    assert s["counterfactuals"]["correct"]["delta_drop_mean"] > 0.2  # removing the tumor matters
    # every check about *where* the model looks passes; robustness is the exception, and rightly so:
    # this model saw no intensity augmentation, and a brightness shift moves it to chance
    reasons = [c for c in s["verdict"]["checks"] if c["name"] != "robustness"]
    assert not [c["name"] for c in reasons if c["status"] == "fail"]
    assert check(s, "robustness")["status"] == "fail"


def test_shortcut_model_is_flagged(marker, clean):
    s, out = marker
    sc = s["shortcut"]
    assert sc["flagged"] and sc["accuracy"]["brain_blanked"] > sc["chance"] + 0.3
    assert check(s, "shortcut")["status"] == "fail"
    a = s["attention"]["all"]
    assert a["share_correct_focused_outside_brain"] > 0.5
    assert a["flag_counts"]["correct but focused outside the brain"] > 0
    assert check(s, "attention")["status"] == "fail"
    assert s["verdict"]["status"] == "fail"
    # the two models differ where it matters: removing the tumor hurts the clean one far more
    assert clean[0]["counterfactuals"]["correct"]["delta_drop_mean"] > s["counterfactuals"]["correct"]["delta_drop_mean"]


def test_outputs_one_row_per_image_and_a_self_contained_report(marker):
    s, out = marker
    df = pd.read_csv(out / "gradcam_analysis.csv")
    assert len(df) == s["n_images"] == 64
    for col in ("path", "truth", "prediction", "correct", "confidence", "energy_background", "energy_skull",
                "energy_brain", "energy_tumor", "peak_region", "focus", "flags", "pointing_hit", "delta_drop",
                "delta_focus", "prediction_brain_blanked"):
        assert col in df.columns, col
    assert (df["focus"] == "background").mean() > 0.5
    assert np.allclose(df[["energy_background", "energy_skull", "energy_brain"]].sum(axis=1), 1, atol=1e-4)
    html = (out / "report.html").read_text()
    assert "SHORTCUT" in html and html.index("Verdict") < html.index("Accuracy and calibration")
    assert 'src="http' not in html and 'src="figures' not in html  # every image embedded
    assert html.count("data:image/") >= 8
    assert json.loads((out / "summary.json").read_text())["verdict"]["status"] == "fail"
