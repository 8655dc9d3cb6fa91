"""Keras 3 models audited on Keras's torch backend (models/keras_model.py, issue 26).

A small Keras CNN is trained here on phantoms (grayscale repeated to RGB, NHWC, [0, 1], softmax
output), saved as `.keras`, as a full `.h5` and as weights only; each file loads through
load_model, predicts what Keras predicts, and the audit runs on it end to end. Grad-CAM on the
split model (its CAM layer seen in NCHW) is checked against Grad-CAM computed by hand with autograd.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

keras = pytest.importorskip("keras")

from tumorlens.audit.config import AuditConfig  # noqa: E402
from tumorlens.audit.forward import to_input  # noqa: E402
from tumorlens.audit.runner import run_audit  # noqa: E402
from tumorlens.audit.sanity import randomisable_layers  # noqa: E402
from tumorlens.data.preprocess import PreprocessRecipe  # noqa: E402
from tumorlens.data.synthetic import make_phantoms  # noqa: E402
from tumorlens.explain import explain  # noqa: E402
from tumorlens.explain.localisation import stage_strides  # noqa: E402
from tumorlens.models.formats import ModelFormatError  # noqa: E402
from tumorlens.models.loading import load_model  # noqa: E402

SIZE = 32
CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
SPEC = dict(classes=CLASSES, outputs="probabilities")

BUILDER = '''
import keras


def build(width=8):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="fc")(x))
'''


def display(samples) -> np.ndarray:
    """(N, S, S) display images in [0, 1]: what tumorlens feeds a model with a unit-scaled spec."""
    recipe = PreprocessRecipe(size=SIZE, clip_low=0.0, clip_high=100.0, mean=0.0, std=1.0)
    return recipe.batch([s.image for s in samples.samples])[:, 0]


def rgb_nhwc(images01: np.ndarray) -> np.ndarray:
    return np.repeat(images01[..., None], 3, axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def files(training_threads, tmp_path_factory):
    """The trained Keras model and its files: .keras, full .h5, weights-only .h5 + builder."""
    root = tmp_path_factory.mktemp("keras")
    builder = root / "builder.py"
    builder.write_text(BUILDER)
    keras.utils.set_random_seed(0)
    namespace: dict = {}
    exec(compile(BUILDER, str(builder), "exec"), namespace)
    model = namespace["build"]()
    train = make_phantoms(128, size=SIZE, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(rgb_nhwc(display(train)), train.label_indices(), epochs=10, batch_size=16, verbose=0)
    paths = {"keras": root / "model.keras", "h5": root / "model.h5", "weights": root / "model.weights.h5"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.save_weights(paths["weights"])
    return model, paths, builder


@pytest.fixture(scope="module")
def test_images():
    return display(make_phantoms(8, size=SIZE, seed=99))


@pytest.mark.parametrize("kind", ["keras", "h5", "weights", "object"])
def test_loads_and_predicts_as_keras(files, test_images, kind):
    model, paths, builder = files
    if kind == "object":
        tm = load_model(model, **SPEC)
    elif kind == "weights":
        tm = load_model(paths[kind], arch=f"{builder}:build", **SPEC)
    else:
        tm = load_model(paths[kind], **SPEC)
    assert tm.recipe.size == SIZE and tm.source["spec"]["layout"] == "NHWC" and tm.source["spec"]["channels"] == 3
    ours = tm.probabilities(to_input(tm, test_images))
    theirs = model.predict(rgb_nhwc(test_images), verbose=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # the CAM layer is the NCHW view of Keras layer c3 (the deepest map of 8 x 8 at 32 px), and
    # everything that hooks by name sees it as a stride-4 stage
    assert tm.target_layer == "model.cam"
    assert any("'c3'" in n for n in tm.source["notes"]), tm.source["notes"]
    assert tm.capabilities == {"gradients": True, "cam": True, "randomise": True, "training_hashes": False}
    assert stage_strides(tm.net, SIZE) == {4: "model.cam"}


def test_gradcam_matches_autograd(files, test_images):
    model, paths, _ = files
    tm = load_model(paths["keras"], **SPEC)
    x = to_input(tm, test_images[:4])
    got = explain(tm, x, method="gradcam")
    assert got.layer == "model.cam"

    # by hand: the class score's gradient at the CAM layer's (NCHW) activations
    acts = {}
    handle = tm.net.get_submodule("model.cam").register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        with torch.enable_grad():
            out = tm.net(x.clone())
            a = acts["a"]
            targets = out.argmax(dim=1)
            grads, = torch.autograd.grad(out[torch.arange(len(x)), targets].sum(), a)
    finally:
        handle.remove()
    assert a.shape == (4, 16, 8, 8)  # (N, C, h, w): 16 channels of 8 x 8
    assert np.array_equal(got.targets, targets.numpy())
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()
    for mine, theirs in zip(cam, got.heatmaps):
        mine = (mine - mine.min()) / (mine.max() - mine.min() + 1e-12)
        theirs = (theirs - theirs.min()) / (theirs.max() - theirs.min() + 1e-12)
        assert np.abs(mine - theirs).max() < 1e-3  # the same bilinear upsampling as pytorch-grad-cam's


def test_randomisation_reaches_keras_weights_and_spares_the_original(files, test_images):
    import copy

    _, paths, _ = files
    tm = load_model(paths["keras"], **SPEC)
    x = to_input(tm, test_images[:2])
    before = tm.net(x).detach()
    net = copy.deepcopy(tm.net)
    layers = randomisable_layers(net)
    assert layers == [f"model.layers.{i}" for i in range(4)]  # c1, c2, c3, fc
    torch.manual_seed(0)
    for name in layers:
        net.get_submodule(name).reset_parameters()
    assert not torch.allclose(net(x), before, atol=1e-3)
    assert torch.equal(tm.net(x).detach(), before)


def test_audit_runs_end_to_end(files, tmp_path):
    _, paths, _ = files
    tm = load_model(paths["h5"], **SPEC)
    cfg = AuditConfig(methods=("gradcam",), compare_n=4, sanity_n=2, progress=False, robustness_n=8, road_n=0,
                      gallery_n=2)
    summary = run_audit(tm, make_phantoms(16, size=SIZE, seed=99), tmp_path, cfg)
    assert summary["verdict"]["status"] in ("pass", "warn", "fail")
    assert "sanity" in summary and "gradcam" in summary["sanity"]  # the randomisation check ran
    assert (tmp_path / "report.html").is_file()
    # the report names the CAM layer as the user's model does (a Keras layer), not the wrapper's split point
    assert summary["model"]["cam_layer"] == tm.net.model.cam_layer_name != "cam"


def test_weights_only_without_builder_says_what_to_pass(files):
    _, paths, _ = files
    with pytest.raises(ModelFormatError, match=r"weights only.*--arch path/to/model.py:build_fn"):
        load_model(paths["weights"], **SPEC)


def test_lambda_layer_needs_trust_code(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0 - 1.0, name="scale")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelFormatError, match=r"contains Python code.*--trust-code"):
        load_model(path, **SPEC)
    tm = load_model(path, trust_code=True, **SPEC)
    x = np.random.default_rng(0).random((2, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(tm.probabilities(to_input(tm, x)), model.predict(rgb_nhwc(x), verbose=0), atol=1e-4)


def test_split_respects_skip_connections_and_sequential_models():
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    b = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner")(a)
    x = keras.layers.Add(name="block_out")([a, b])  # `inner` is bypassed by the skip from `stem`
    x = keras.layers.GlobalMaxPooling2D()(x)
    residual = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    tm = load_model(residual, **SPEC)
    assert tm.target_layer == "model.cam" and any("'block_out'" in n for n in tm.source["notes"])
    with pytest.raises(ModelFormatError, match="cannot be split there"):
        load_model(residual, cam_layer="inner", **SPEC)
    x = np.random.default_rng(0).random((2, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(tm.probabilities(to_input(tm, x)), residual.predict(rgb_nhwc(x), verbose=0), atol=1e-4)

    sequential = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                                   keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    tm = load_model(sequential, classes=["glioma", "notumor", "pituitary"])
    assert tm.target_layer == "model.cam" and tm.source["spec"]["channels"] == 1
    assert explain(tm, to_input(tm, x), method="gradcam").heatmaps.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(tm.logits(to_input(tm, x)).detach().numpy(),
                               sequential.predict(x[..., None], verbose=0), atol=1e-4)


def test_another_backend_is_refused_with_the_fix(tmp_path):
    import subprocess
    import sys

    code = ("from tumorlens.models.keras_model import import_keras\n"
            "from tumorlens.models.formats import ModelFormatError\n"
            "try:\n    import_keras()\nexcept ModelFormatError as exc:\n    print(exc)\n")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "set KERAS_BACKEND=torch before importing keras" in out.stdout, out.stdout + out.stderr
