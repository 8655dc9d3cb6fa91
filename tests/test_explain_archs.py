"""The heavier architectures: a CAM method and the cheap gradient/perturbation methods run on each,
with one-channel input, at a small size (all methods run on simple_cnn and resnet18 elsewhere)."""

import numpy as np
import pytest
import torch

from tumorlens.explain import explain
from tumorlens.models.registry import ARCHITECTURES, build_model

HEAVY = ["resnet50", "efficientnet_b0", "xception", "efficientnet_lite0", "efficientnet_lite2"]


@pytest.mark.parametrize("arch", HEAVY)
def test_heavy_architecture_runs_cam_gradient_and_occlusion(arch):
    torch.manual_seed(0)
    net = build_model(arch, 4).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        predicted = net(x).argmax(1).numpy()
    for method, params in [("gradcam", {}), ("saliency", {}), ("occlusion", {"window": 32, "stride": 32})]:
        ex = explain((net, arch), x, method, **params)
        assert ex.heatmaps.shape == (2, 64, 64), (arch, method)
        assert np.isfinite(ex.heatmaps).all() and 0 <= ex.heatmaps.min() and ex.heatmaps.max() <= 1
        np.testing.assert_array_equal(ex.targets, predicted)
    assert ex.raw.shape == (2, 64, 64)
    # The registry's CAM layer is a real 4-D stage of this network.
    cam = explain((net, arch), x, "eigencam")
    assert cam.layer == ARCHITECTURES[arch].target_layer and cam.heatmaps.max() > 0
