"""Bad input to explain() gets one clear ValueError naming what was wrong and what was expected."""

import numpy as np
import pytest
import torch

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.explain import ExplainError, explain
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.registry import build_model


@pytest.fixture(scope="module")
def tumor_model():
    torch.manual_seed(0)
    net = build_model("simple_cnn", 4).eval()
    return TumorModel(net=net, arch="simple_cnn", classes=["glioma", "meningioma", "notumor", "pituitary"],
                      recipe=PreprocessRecipe(size=48))


def x(n=2, c=1, size=48):
    return torch.randn(n, c, size, size)


def test_error_is_a_value_error():
    assert issubclass(ExplainError, ValueError)


def test_unknown_method_lists_the_methods(tumor_model):
    with pytest.raises(ValueError, match=r"unknown explain method 'gradcamm'.*gradcam, gradcam\+\+.*saliency"):
        explain(tumor_model, x(), "gradcamm")


def test_method_aliases_are_accepted(tumor_model):
    assert explain(tumor_model, x(), "Grad-CAM").method == "gradcam"
    assert explain(tumor_model, x(), "integrated_gradients", steps=2).method == "ig"


def test_unknown_layer_lists_nearby_names(tumor_model):
    with pytest.raises(ValueError, match=r"unknown layer 'features.22'.*nearby names: .*features\.2"):
        explain(tumor_model, x(), "gradcam", layer="features.22")
    with pytest.raises(ValueError, match=r"unknown layer 'zzz'.*features, pool, dropout, classifier"):
        explain(tumor_model, x(), "gradcam", layer="zzz")


def test_non_convolutional_layer_is_refused_for_cam(tumor_model):
    with pytest.raises(ValueError, match=r"layer 'classifier' outputs \(2, 4\); CAM methods need a convolutional"):
        explain(tumor_model, x(), "gradcam", layer="classifier")


def test_three_channels_for_a_grayscale_model(tumor_model):
    with pytest.raises(ValueError, match=r"expects 1-channel input; got 3 channels.*grayscale"):
        explain(tumor_model, x(c=3), "gradcam")


def test_wrong_size_for_the_models_recipe(tumor_model):
    with pytest.raises(ValueError, match=r"images are 64x64 but this model was trained on 48x48.*model.prepare"):
        explain(tumor_model, x(size=64), "ig")


def test_image_too_small_for_the_architecture():
    net = build_model("simple_cnn", 2).eval()  # three 2x poolings: 2x2 pixels shrink to nothing
    for method in ("saliency", "gradcam"):
        with pytest.raises(ValueError, match=r"cannot run on input of shape \(1, 1, 2, 2\)"):
            explain((net, "simple_cnn"), torch.zeros(1, 1, 2, 2), method)


def test_wrong_rank_and_type(tumor_model):
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\); got \(48, 48\)"):
        explain(tumor_model, torch.zeros(48, 48), "gradcam")
    with pytest.raises(ValueError, match="must be a .* tensor or array; got list"):
        explain(tumor_model, [[0.0]], "gradcam")
    with pytest.raises(ValueError, match="NaN"):
        bad = x()
        bad[0, 0, 0, 0] = float("nan")
        explain(tumor_model, bad, "gradcam")


def test_bad_targets(tumor_model):
    with pytest.raises(ValueError, match=r"target class index 7 is out of range; the model has 4 classes"):
        explain(tumor_model, x(), "gradcam", targets=7)
    with pytest.raises(ValueError, match=r"got 3 targets for 2 images"):
        explain(tumor_model, x(), "gradcam", targets=[0, 1, 2])
    with pytest.raises(ValueError, match=r"unknown target class 'tumour'; classes: glioma, meningioma"):
        explain(tumor_model, x(), "gradcam", targets="tumour")
    ex = explain(tumor_model, x(), "gradcam", targets=["notumor", "glioma"])
    np.testing.assert_array_equal(ex.targets, [2, 0])


def test_unknown_parameter_is_not_silently_ignored(tumor_model):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['stepz'\] for ig; it takes: steps, baseline"):
        explain(tumor_model, x(), "ig", stepz=8)
    with pytest.raises(ValueError, match=r"occlusion window 100 must lie between 1 and the image side 48"):
        explain(tumor_model, x(), "occlusion", window=100)
    with pytest.raises(ValueError, match=r"unknown baseline 'grey'"):
        explain(tumor_model, x(), "ig", steps=2, baseline="grey")


def test_cam_without_architecture_or_layer():
    net = build_model("simple_cnn", 2).eval()
    with pytest.raises(ValueError, match=r"CAM methods need a target layer"):
        explain(net, x(), "gradcam")
    assert explain(net, x(), "saliency").heatmaps.shape == (2, 48, 48)  # non-CAM methods need no layer


def test_not_a_model():
    with pytest.raises(ValueError, match=r"model must be a TumorModel .* got str"):
        explain("model.pt", x(), "gradcam")
