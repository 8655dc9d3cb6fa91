"""Every explainer on the small architectures: shape, range, targets, batching, hooks, side effects."""

import numpy as np
import pytest
import torch

from tumorlens.explain import CAM_METHODS, METHODS, REGISTRY, explain
from tumorlens.models.registry import build_model

# Cheap settings: the point here is that each method runs and returns well-formed maps.
CHEAP = {
    "ig": {"steps": 4},
    "gradshap": {"samples": 4},
    "occlusion": {"window": 16, "stride": 16},
    "lime": {"samples": 24, "n_segments": 12},
    "kernelshap": {"samples": 24, "n_segments": 12},
    "scorecam": {"channel_batch": 64},
}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {name: build_model(name, 3).eval() for name in ("simple_cnn", "resnet18")}


def _images(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * 0.3 - 1.0
    x[:, :, 20:40, 24:44] += 2.0  # some structure for the maps to find
    return x


@pytest.mark.parametrize("arch", ["simple_cnn", "resnet18"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_one_normalised_map_per_image(nets, arch, method):
    net = nets[arch]
    # Score-CAM costs one forward per layer channel (512 for ResNet-18): one image is enough there.
    x = _images(1 if (method == "scorecam" and arch == "resnet18") else 2)
    ex = explain((net, arch), x, method, **CHEAP.get(method, {}))
    n = len(x)
    assert ex.method == method
    assert ex.heatmaps.shape == (n, 64, 64) and ex.heatmaps.dtype == np.float32
    assert np.isfinite(ex.heatmaps).all()
    assert ex.heatmaps.min() >= 0.0 and ex.heatmaps.max() <= 1.0
    assert ex.raw is not None and ex.raw.shape == (n, 64, 64)
    with torch.no_grad():
        predicted = net(x).argmax(1).numpy()
    np.testing.assert_array_equal(ex.targets, predicted)  # default target: the predicted class
    if method in CAM_METHODS and REGISTRY[method].layers is None:
        assert ex.layer == {"simple_cnn": "features.2", "resnet18": "layer4"}[arch]
    elif method in CAM_METHODS:  # the method picks its own stage (localise: stride 16)
        assert ex.layer == {"simple_cnn": "features.2", "resnet18": "layer3.1"}[arch]


def test_explicit_targets_are_used_and_names_resolve(nets):
    x = _images(3)
    ex = explain((nets["simple_cnn"], "simple_cnn"), x, "saliency", targets=[2, 0, 1])
    np.testing.assert_array_equal(ex.targets, [2, 0, 1])
    ex = explain((nets["simple_cnn"], "simple_cnn"), x, "gradcam", targets=1)
    np.testing.assert_array_equal(ex.targets, [1, 1, 1])


def test_batches_split_without_changing_the_result(nets):
    """A batch size smaller than N must give the same maps as one big batch (per-image methods)."""
    x = _images(5)
    net = nets["simple_cnn"]
    for method, params in [("gradcam", {}), ("ig", {"steps": 4}), ("occlusion", {"window": 16, "stride": 16})]:
        a = explain((net, "simple_cnn"), x, method, batch_size=32, **params)
        b = explain((net, "simple_cnn"), x, method, batch_size=2, **params)
        np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-4, err_msg=method)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_model_is_left_as_found(nets):
    """No hooks left behind, no .grad written, weights still trainable, train mode restored."""
    net = build_model("simple_cnn", 3)
    net.train()
    x = _images(2)
    for method in ("gradcam", "scorecam", "eigencam", "ig", "saliency"):
        explain((net, "simple_cnn"), x, method, **CHEAP.get(method, {}))
    assert net.training
    assert all(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in net.modules()) == 0


def test_cam_gradients_match_a_plain_backward_pass(nets):
    """Grad-CAM from the re-rooted graph equals Grad-CAM computed by the textbook recipe."""
    net = nets["simple_cnn"]
    x = _images(2)
    ex = explain((net, "simple_cnn"), x, "gradcam", targets=[1, 2])
    store = {}
    handle = net.features[2].register_forward_hook(lambda m, i, o: store.update(a=o))
    xg = x.clone().requires_grad_(True)
    logits = net(xg)
    handle.remove()
    act = store["a"]
    grads = torch.autograd.grad(logits[[0, 1], [1, 2]].sum(), act)[0]
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * act).sum(1)).detach().numpy()
    import cv2

    for i in range(2):
        c = cam[i] - cam[i].min()
        c = c / (c.max() + 1e-7)
        expected = cv2.resize(c.astype(np.float32), (64, 64))
        expected = (expected - expected.min()) / (expected.max() - expected.min())  # the library rescales after resizing
        np.testing.assert_allclose(ex.heatmaps[i], expected, atol=1e-4)


def test_layer_override_and_arch_keyword(nets):
    net = nets["resnet18"]
    x = _images(2)
    ex = explain(net, x, "gradcam", arch="resnet18", layer="layer3")
    assert ex.layer == "layer3" and ex.heatmaps.shape == (2, 64, 64)
    ex = explain(net, x, "gradcam", layer="layer4.1.conv2")  # no arch needed when the layer is named
    assert ex.layer == "layer4.1.conv2"


def test_empty_batch_gives_empty_maps(nets):
    ex = explain((nets["simple_cnn"], "simple_cnn"), torch.zeros(0, 1, 64, 64), "gradcam")
    assert ex.heatmaps.shape == (0, 64, 64) and ex.targets.shape == (0,)


def test_an_explained_network_is_not_kept_alive():
    """CAM objects live for one call: nothing in the explain package holds the network afterwards."""
    import gc
    import weakref

    net = build_model("simple_cnn", 3).eval()
    x = _images(2)
    for method in ("gradcam", "scorecam", "ig"):
        explain((net, "simple_cnn"), x, method, **CHEAP.get(method, {}))
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_multi_layer_cam_matches_the_library(nets):
    """Several target layers (a method's own stages) give the stock library's multi-layer map, so
    the graph rooted at the earlier layer still carries the gradients of the later one."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from tumorlens.explain.model_access import ChannelsLast, explaining

    net = nets["simple_cnn"]
    x = _images(2)
    names = ["features.1", "features.2"]
    layers = [net.get_submodule(n) for n in names]
    ex = explain((net, "simple_cnn"), x, "layercam", targets=[1, 2], layer="+".join(names))
    ours = ex.heatmaps
    assert ex.layer == "features.1+features.2"
    with explaining(net):
        with pgc.LayerCAM(model=ChannelsLast(net), target_layers=layers) as cam:
            # frozen weights: the stock library needs an input that requires grad to build a graph
            stock = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    np.testing.assert_allclose(ours, stock, atol=1e-5)
    single = explain((net, "simple_cnn"), x, "layercam", targets=[1, 2], layer=names[1]).heatmaps
    assert np.abs(ours - single).mean() > 0.01  # the earlier layer does contribute


def test_sampling_methods_repeat_with_a_seed(nets):
    net = nets["simple_cnn"]
    x = _images(1)
    for method, params in [("lime", {"samples": 24, "n_segments": 12}), ("gradshap", {"samples": 4}), ("random", {})]:
        a = explain((net, "simple_cnn"), x, method, seed=3, **params)
        b = explain((net, "simple_cnn"), x, method, seed=3, **params)
        np.testing.assert_array_equal(a.raw, b.raw, err_msg=method)


def test_eigencam_projection_is_the_librarys_component_with_a_fixed_sign():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from tumorlens.explain.cam import first_component_projection

    rng = np.random.default_rng(0)
    # Fewer positions than channels (the usual last stage) and more (an early layer by --layer).
    for channels, side in [(32, 8), (512, 2), (1280, 5), (8, 12)]:
        acts = np.maximum(rng.normal(size=(3, channels, side, side)), 0).astype(np.float32)
        acts[:, :, : side // 2] *= 3  # a half where the layer fires more
        ours, lib = first_component_projection(acts), get_2d_projection(acts)
        for o, ref, a in zip(ours, lib, acts):
            sign = np.sign(np.sum(o * ref))
            np.testing.assert_allclose(o, sign * ref, atol=1e-3 * np.abs(ref).max())
            # Oriented toward the stronger activations, whatever sign the library's SVD picked.
            assert o[: side // 2].mean() > o[side // 2 :].mean()
        np.testing.assert_array_equal(ours, first_component_projection(acts))


def test_stages_by_stride(nets):
    from tumorlens.explain.localisation import stage_layers, stage_strides

    assert stage_strides(nets["simple_cnn"], 64) == {2: "features.0", 4: "features.1", 8: "features.2"}
    # a stage that ends on its last block is named by that block (the same tensor)
    assert stage_strides(nets["resnet18"], 64) == {2: "relu", 4: "layer1.1", 8: "layer2.1", 16: "layer3.1",
                                                   32: "layer4.1"}
    assert stage_layers(nets["resnet18"], 64, [8, 32]) == ["layer2.1", "layer4.1"]
    assert stage_layers(nets["simple_cnn"], 64, [8, 16, 32]) == ["features.2"]  # nearest strides, once each
