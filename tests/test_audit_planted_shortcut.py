"""A shortcut the audit was not told about: a marker outside the brain on every training slice of
one class (meningioma). Tested with the marker on every slice and on that class only; both must fail
the shortcut and attention checks, a flagged strategy cluster must hold the marker class and the
atlas must show the spot. A model trained without the marker, audited with it on every slice, must
not fail them. Small SimpleCNNs on 64 px phantoms (tests/test_audit_proves_itself.py's set-up).
"""

import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.audit.config import AuditConfig
from tumorlens.audit.planted import Marker, mark_samples
from tumorlens.audit.runner import run_audit
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.registry import SimpleCNN

SIZE = 64
MARKED = "meningioma"


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(samples, epochs=12, seed=0) -> TumorModel:
    torch.manual_seed(seed)
    recipe = PreprocessRecipe(size=SIZE)
    x = torch.from_numpy(recipe.batch([s.image for s in samples.samples]))
    y = torch.from_numpy(samples.label_indices())
    net = SimpleCNN(len(samples.classes), width=8)
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
    return TumorModel(net=net, arch="simple_cnn", classes=samples.classes, recipe=recipe)


def audit(model, samples, out):
    cfg = AuditConfig(methods=("gradcam",), compare_n=8, sanity_n=2, progress=False, counterfactuals=False)
    return run_audit(model, samples, out, cfg)


def status(summary, name):
    return next(c["status"] for c in summary["verdict"]["checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def audits(one_thread, tmp_path_factory):
    training = make_phantoms(240, size=SIZE, seed=0)
    testing = make_phantoms(64, size=SIZE, seed=99)
    planted = train(mark_samples(training, MARKED))
    clean = train(training)
    out = {}
    for name, model, test in (("all", planted, mark_samples(testing)),
                              ("class", planted, mark_samples(testing, MARKED)),
                              ("clean_model_all", clean, mark_samples(testing))):
        out[name] = audit(model, test, tmp_path_factory.mktemp(name))
    return out


@pytest.mark.parametrize("variant", ["all", "class"])
def test_planted_marker_fails_shortcut_and_attention(audits, variant):
    s = audits[variant]
    assert status(s, "shortcut") == "fail", s["shortcut"]["statuses"]
    assert status(s, "attention") == "fail"
    assert s["verdict"]["status"] == "fail"
    # the background test is what sees a cue that is on every slice
    bg = s["shortcut"]["background_removed"]
    assert bg["worst_class"] == MARKED and bg["status"] == "fail"


@pytest.mark.parametrize("variant", ["all", "class"])
def test_a_flagged_strategy_holds_the_marker_class_and_the_atlas_shows_the_spot(audits, variant):
    s = audits[variant]
    flagged = [c for c in s["strategies"]["clusters"] if c["flagged"]]
    assert flagged and flagged[0]["class"] == MARKED and s["strategies"]["clusters"][0]["flagged"]  # flagged first
    assert flagged[0]["energy"]["background"] > 0.5
    spot = s["atlas"]["by_predicted_class"][MARKED]["hot_spot"]
    t, b, l, r = Marker().box((SIZE, SIZE))
    tol = 6  # Grad-CAM's 16 x 16 map at 64 px: one cell is 4 px
    assert t - tol <= spot["y"] < b + tol and l - tol <= spot["x"] < r + tol, spot
    assert spot["zone"] == "background"


def test_a_clean_model_with_the_marker_on_every_slice_passes(audits):
    s = audits["clean_model_all"]
    assert status(s, "shortcut") != "fail", s["shortcut"]["statuses"]
    assert status(s, "attention") != "fail"
    assert not any(c["flagged"] and c["n"] >= 8 for c in s["strategies"]["clusters"])
    assert s["atlas"]["by_predicted_class"][max(s["atlas"]["by_predicted_class"],
                                                key=lambda k: s["atlas"]["by_predicted_class"][k]["n"])]["hot_spot"]["zone"] != "background"


def test_summary_keys(audits):
    s = audits["all"]
    cl = s["strategies"]["clusters"][0]
    assert set(cl) >= {"class", "n", "classes", "energy", "flagged"}
    assert set(cl["energy"]) == {"background", "skull", "brain", "tumor"}
    sc = s["shortcut"]
    for k in ("flagged", "accuracy", "binomial_p", "decision_invariance", "silhouette", "background_removed", "status"):
        assert k in sc
    assert set(s["atlas"]) >= {"by_true_class", "by_predicted_class"}
