"""Audit any model (issue 26): one small torchvision-style network, trained here on phantoms, saved the
ways researchers save models (state dict with their own builder file, pickled module, TorchScript,
torch.export, ONNX), loads through one call; predictions agree across formats, CAM maps of the
hookable ones agree, each audits end to end; a function audits as a black box; a wrong spec is
caught with figures; bad files get messages that say what to pass."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import tumorlens
from tumorlens.data.synthetic import make_phantoms
from tumorlens.errors import TumorlensError
from tumorlens.models.loading import load_model
from tumorlens.models.spec import ModelSpec
from tumorlens.models.spec_input import SpecInput

SIZE = 48
CLASSES = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]  # as published models name them
SPEC = dict(classes=CLASSES, input_size=SIZE, normalize="imagenet")

MODEL_FILE = textwrap.dedent('''
    from torch import nn

    class SmallNet(nn.Module):
        """A torchvision-style CNN: RGB input, stages named features/classifier."""

        def __init__(self, num_classes=4, width=8):
            super().__init__()
            def stage(cin, cout):
                return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))
            self.features = nn.Sequential(stage(3, width), stage(width, 2 * width), stage(2 * width, 4 * width))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(4 * width, num_classes)

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)).flatten(1))
''')


def train_smallnet(model_class, seed: int, epochs: int = 15, lr: float = 1e-3, n_train: int = 240) -> nn.Module:
    """The network, trained through the same input bridge a user's pipeline amounts to (RGB, ImageNet
    statistics). 240 phantoms, 15 epochs at lr 1e-3: over training seeds 0-5 every model learned (test
    accuracy 0.50-0.59, chance 0.25), and the spec check caught the permuted list and the wrong normalisation
    of every one of them while the right spec raised nothing (benchmarks/bench_spec_check_seeds.py; 10
    epochs at 3e-3 left a seed at 0.47)."""
    from tumorlens.data.preprocess import PreprocessRecipe

    torch.manual_seed(seed)
    net = model_class()
    wrapped = SpecInput(net, ModelSpec(**SPEC), channels=3)
    train = make_phantoms(n_train, size=SIZE, seed=0)
    recipe = PreprocessRecipe(size=SIZE, clip_low=0, clip_high=100, mean=0, std=1, interpolation="bilinear")
    x = torch.from_numpy(recipe.batch([s.image for s in train.samples]))
    y = torch.from_numpy(train.label_indices())
    opt = torch.optim.Adam(net.parameters(), lr)
    for _ in range(epochs):
        net.train()
        for i in range(0, len(x), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(wrapped(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def saved(training_threads, tmp_path_factory):
    """The trained network saved five ways, and the phantoms it is audited on."""
    d = tmp_path_factory.mktemp("formats")
    (d / "smallnet.py").write_text(MODEL_FILE)
    import importlib.util

    spec = importlib.util.spec_from_file_location("smallnet_for_test", d / "smallnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[spec.name] = module  # a pickled module needs its class importable, as in the user's notebook
    net = train_smallnet(module.SmallNet, seed=0)
    example = torch.rand(2, 3, SIZE, SIZE)
    files = {"state_dict": d / "weights.pth", "pickled": d / "whole.pt", "torchscript": d / "scripted.pt",
             "export": d / "program.pt2", "onnx": d / "model.onnx"}
    torch.save(net.state_dict(), files["state_dict"])
    torch.save(net, files["pickled"])
    torch.jit.save(torch.jit.trace(net, example), files["torchscript"])
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes={"x": {0: batch}}), files["export"])
    torch.onnx.export(net, (example,), files["onnx"], dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    return {"dir": d, "files": files, "arch": f"{d / 'smallnet.py'}:SmallNet",
            "test": make_phantoms(32, size=SIZE, seed=99)}


def _load(saved, kind, **extra):
    keys = dict(SPEC, **extra)
    if kind == "state_dict":
        keys["arch"] = saved["arch"]
    if kind == "pickled":
        keys["trust_code"] = True
    return load_model(saved["files"][kind], **keys)


KINDS = ["state_dict", "pickled", "torchscript", "export", "onnx"]


def test_every_format_predicts_the_same(saved):
    images = [s.image for s in saved["test"].samples]
    probs = {k: _load(saved, k).predict_images(images) for k in KINDS}
    for k in KINDS[1:]:
        assert np.abs(probs[k] - probs["state_dict"]).max() < 1e-4, k
    truth = saved["test"].label_indices()
    assert (probs["state_dict"].argmax(1) == truth).mean() > 0.4  # it learned the phantoms (chance 0.25)


def test_cam_maps_agree_where_layers_can_be_hooked(saved):
    from tumorlens.explain import explain

    maps = {}
    for k in ("state_dict", "pickled", "onnx"):
        m = _load(saved, k)
        assert m.capabilities["cam"], k
        x = m.prepare([s.image for s in saved["test"].samples[:6]])
        maps[k] = explain(m, x, method="gradcam").heatmaps
    assert np.abs(maps["pickled"] - maps["state_dict"]).max() < 1e-3
    assert np.abs(maps["onnx"] - maps["state_dict"]).max() < 1e-3


def test_class_names_are_matched_to_the_datasets(saved):
    m = _load(saved, "state_dict")
    assert m.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert m.source["declared_classes"] == CLASSES


@pytest.mark.parametrize("kind", KINDS)
def test_each_format_audits_end_to_end(saved, kind, tmp_path):
    report = tumorlens.audit(_load(saved, kind), saved["test"], tmp_path, methods=("gradcam", "saliency"), compare_n=2,
                             sanity_n=1, road_n=0, robustness_n=8, data_checks=False, progress=False)
    names = {c["name"]: c["status"] for c in report.verdict["checks"]}
    assert {"attention", "shortcut", "counterfactuals", "robustness", "sanity"} <= set(names)
    assert len(report.records) == len(saved["test"])
    m = report.summary["model"]
    assert m["format"] in ("state_dict", "pickled_module", "torchscript", "torch_export", "onnx")
    if kind == "torchscript":  # scripted layers cannot be hooked: a gradient-free map, no CAM, sanity n/a
        assert m["primary_map"] == "occlusion" and "gradcam" in m["skipped_methods"]
        assert names["sanity"] == "n/a"
    assert not report.summary["spec_check"]["warnings"]  # the right spec raises no warning
    assert (tmp_path / "report.html").read_text().count("format <b>") == 1


def test_a_function_audits_as_a_black_box(saved, tmp_path):
    net = _load(saved, "state_dict").net

    def predict(batch):  # what a user passes: their own preprocessing is in the spec, probabilities out
        with torch.no_grad():
            return torch.softmax(net.model(torch.from_numpy(batch)), 1).numpy()

    report = tumorlens.audit(predict, saved["test"], tmp_path, outputs="probabilities", channels=3,
                             methods=("gradcam", "saliency"), compare_n=2, sanity_n=1, road_n=0, robustness_n=8,
                             data_checks=False, progress=False, **SPEC)
    m = report.summary["model"]
    assert m["format"] == "callable" and m["primary_map"] == "occlusion"
    assert {"gradcam", "saliency"} <= set(m["skipped_methods"])
    statuses = {c["name"]: c["status"] for c in report.verdict["checks"]}
    assert statuses["sanity"] == "n/a" and statuses["shortcut"] in ("pass", "warn", "fail")
    expected = _load(saved, "state_dict").predict_images([s.image for s in saved["test"].samples])
    assert np.abs(report.records["confidence"].to_numpy() - expected.max(1)).max() < 1e-4


def test_a_permuted_class_list_is_caught(saved, tmp_path):
    permuted = [CLASSES[i] for i in (0, 1, 3, 2)]
    report = tumorlens.audit(saved["files"]["onnx"], saved["test"], tmp_path, **dict(SPEC, classes=permuted),
                             methods=("gradcam",), compare_n=2, sanity_n=1, road_n=0, robustness_n=0,
                             data_checks=False, progress=False)
    warnings = report.summary["spec_check"]["warnings"]
    assert [w["kind"] for w in warnings] == ["class_order"]
    assert "permuted" in warnings[0]["message"] and "output 2" in warnings[0]["message"]
    assert "permuted" in (tmp_path / "report.html").read_text()


def test_a_wrong_normalisation_is_caught(saved):
    from tumorlens.audit.spec_check import check_spec

    test = saved["test"]
    wrong = _load(saved, "state_dict", normalize="minus1to1")
    found = check_spec(wrong, test, test.label_indices())
    kinds = {w["kind"]: w for w in found["warnings"]}
    assert "normalize" in kinds and kinds["normalize"]["best"] == "imagenet"
    assert check_spec(_load(saved, "state_dict"), test, test.label_indices())["warnings"] == []


def test_the_audit_leaves_its_inputs_alone(saved, tmp_path):
    test = saved["test"]
    before = [(s.path, s.label, s.mask is None, dict(s.meta)) for s in test.samples]
    tumorlens.audit(_load(saved, "state_dict"), test, tmp_path, methods=("gradcam",), compare_n=2, sanity_n=1,
                    road_n=0, robustness_n=0, data_checks=False, progress=False)
    assert [(s.path, s.label, s.mask is None, dict(s.meta)) for s in test.samples] == before


def test_files_that_need_more_say_what_to_pass(saved, tmp_path):
    with pytest.raises(TumorlensError, match="--arch"):
        load_model(saved["files"]["state_dict"], **SPEC)
    with pytest.raises(TumorlensError, match="--trust-code"):
        load_model(saved["files"]["pickled"], **SPEC)
    with pytest.raises(TumorlensError, match="class names"):
        load_model(saved["files"]["onnx"], input_size=SIZE)
    image = tmp_path / "slice.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(TumorlensError, match="looks like an image"):
        load_model(image)


def test_a_tumorlens_checkpoint_loads_as_before():
    from tumorlens.assets import default_model_path
    from tumorlens.models.checkpoint import load_model as load_checkpoint

    a, b = load_checkpoint(default_model_path()), load_model(default_model_path())
    x = torch.rand(2, 1, a.recipe.size, a.recipe.size)
    assert torch.equal(a.logits(x), b.logits(x)) and a.classes == b.classes and not b.source
    with pytest.raises(TumorlensError, match="carries its own"):
        load_model(default_model_path(), normalize="imagenet")


def test_model_inspect_writes_a_spec_that_loads(saved, tmp_path):
    from typer.testing import CliRunner

    from tumorlens.cli import app
    from tumorlens.models.spec import read_spec

    out = tmp_path / "spec.toml"
    res = CliRunner().invoke(app, ["model", "inspect", str(saved["files"]["onnx"]), "--write-spec", str(out)])
    assert res.exit_code == 0, res.output
    assert "format: onnx" in res.output and "num_outputs: 4" in res.output
    spec = read_spec(out)
    assert spec.input_size == SIZE and spec.channels == 3 and len(spec.classes) == 4


class _Pickled:  # any class: unpickling one runs the code that builds it
    pass


def test_resuming_from_a_file_with_pickled_objects_needs_trust(tmp_path):
    from tumorlens.training.trainer import _resume_schedule_length

    path = tmp_path / "last.ckpt"
    torch.save({"optimizer_states": [], "lr_schedulers": [{"total_steps": 7}], "hparams": _Pickled()}, path)
    with pytest.raises(TumorlensError, match="--trust-code"):
        _resume_schedule_length(str(path))
    assert _resume_schedule_length(str(path), trust_code=True) == 7


def test_a_check_the_model_cannot_serve_is_not_applicable_with_its_reason(saved, tmp_path):
    from tumorlens.audit.checks import Check, default_checks
    from tumorlens.audit.config import AuditConfig
    from tumorlens.audit.runner import run_audit

    class NeedsGradients(Check):  # a newcomer's check: its hooks must not run on a black box
        name = "needs_gradients"
        needs = ("gradients",)

        def on_chunk(self, ctx, chunk):
            raise AssertionError("on_chunk ran on a model without gradients")

        def finish(self, ctx):
            raise AssertionError("finish ran on a model without gradients")

    black_box = load_model(lambda x: np.full((len(x), 4), 0.25), classes=CLASSES, input_size=SIZE, channels=1,
                           normalize="unit", outputs="probabilities")
    cfg = AuditConfig(methods=("occlusion",), compare_n=2, sanity_n=1, road_n=0, robustness_n=0, data_checks=False,
                      progress=False)
    summary = run_audit(black_box, saved["test"], tmp_path, cfg, checks=default_checks() + [NeedsGradients()])
    line = next(c for c in summary["verdict"]["checks"] if c["name"] == "needs_gradients")
    assert line["status"] == "n/a" and "gradients" in line["detail"]
    assert summary["needs_gradients"] == {"status": "n/a", "reason": line["detail"].removeprefix("not run: ")}


def test_model_inspect_sees_a_softmax_at_the_end(saved, tmp_path):
    from tumorlens.models.inspect import inspect_model

    net = torch.jit.load(str(saved["files"]["torchscript"]))
    softmaxed = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    path = tmp_path / "softmaxed.pt"
    torch.jit.save(torch.jit.trace(softmaxed, torch.rand(2, 3, SIZE, SIZE)), path)
    assert inspect_model(path, input_size=SIZE)["outputs"] == "probabilities"
    assert inspect_model(saved["files"]["torchscript"], input_size=SIZE)["outputs"] == "logits"


def test_intensity_max_feeds_x_over_255_instead_of_min_max():
    image = np.zeros((SIZE, SIZE), np.float32)
    image[10:30, 10:30] = 200.0  # an 8-bit slice that does not reach 255
    black_box = dict(classes=CLASSES, input_size=SIZE, channels=1, normalize="unit", outputs="probabilities")
    fixed = load_model(lambda x: np.full((len(x), 4), 0.25), intensity_max=255, **black_box)
    per_slice = load_model(lambda x: np.full((len(x), 4), 0.25), **black_box)
    assert np.isclose(fixed.recipe.display(image).max(), 200 / 255)
    assert np.isclose(per_slice.recipe.display(image).max(), 1.0)
    # a shifted copy keeps its pixels (no re-scaling), as a file saved by the scanner would
    dimmer = fixed.recipe.acquired(image) * 0.5
    assert np.isclose(fixed.recipe.from_acquired(dimmer).max(), 100 / 255)
    assert fixed.recipe.to_dict()["value_max"] == 255
    assert "value_max" not in per_slice.recipe.to_dict()  # tumorlens checkpoints keep the fields they had


def test_predict_takes_files_and_arrays_and_names_an_unreadable_file(saved, tmp_path):
    import cv2

    image = saved["test"].samples[0].image
    good = tmp_path / "slice.png"
    cv2.imwrite(str(good), np.clip(image / image.max() * 255, 0, 255).astype(np.uint8))
    bad = tmp_path / "broken.png"
    bad.write_bytes(good.read_bytes()[:60])  # a PNG cut short
    keys = dict(SPEC, arch=saved["arch"])
    with pytest.warns(UserWarning, match="broken.png"):
        rows = tumorlens.predict(saved["files"]["state_dict"], [good, bad], **keys)
    assert [r["path"] for r in rows] == [str(good)]
    from_array = tumorlens.predict(saved["files"]["state_dict"], cv2.imread(str(good), cv2.IMREAD_GRAYSCALE), **keys)
    assert from_array[0]["class"] == rows[0]["class"]
    assert abs(from_array[0]["confidence"] - rows[0]["confidence"]) < 1e-4
