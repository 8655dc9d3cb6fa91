"""The explainers point at what a trained model uses: a small bright blob that alone decides the
class. A model is trained here for a few seconds on synthetic slices (blob = class 1, none =
class 0); Grad-CAM, Integrated Gradients and Occlusion must put their heat on the blob."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tumorlens.explain import explain
from tumorlens.models.registry import SimpleCNN

SIZE = 64


def make_blobs(n: int, seed: int):
    """Head-like ellipse with texture on black; class 1 adds a Gaussian blob (sigma 1.5-2.5 px)
    somewhere inside the head. Returns z-scored (n, 1, 64, 64) images, labels, blob centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images = np.zeros((n, SIZE, SIZE), np.float32)
    labels = rng.integers(0, 2, n)
    centres = np.full((n, 2), np.nan)
    for i in range(n):
        cy, cx = SIZE / 2 + rng.normal(0, 2, 2)
        ry, rx = SIZE * rng.uniform(0.36, 0.44, 2)
        head = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img = head * (0.35 + rng.normal(0, 0.05, (SIZE, SIZE)))
        img += head * 0.08 * np.sin(xx / rng.uniform(3, 6) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(3, 6))
        if labels[i]:
            while True:
                by, bx = rng.uniform(0.2 * SIZE, 0.8 * SIZE, 2)
                if ((by - cy) / ry) ** 2 + ((bx - cx) / rx) ** 2 <= 0.6:
                    break
            s = rng.uniform(1.5, 2.5)
            img += 0.55 * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * s * s))
            centres[i] = (by, bx)
        images[i] = img
    x = (np.clip(images, 0, 1) - 0.5) / 0.25
    return torch.from_numpy(x[:, None].astype(np.float32)), torch.from_numpy(labels), centres


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is faster than two contending on a busy machine
    try:
        torch.manual_seed(1)
        net = SimpleCNN(2, width=8)  # the simple_cnn architecture, narrow so that it trains in seconds
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        x, y, _ = make_blobs(512, seed=1)
        net.train()
        for _ in range(150):
            idx = torch.randint(0, len(x), (32,))
            # Quarter turns: blob detectors that respond off-centre average out, as augmentation does in real training.
            xb = torch.rot90(x[idx], int(torch.randint(0, 4, ())), (2, 3))
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        xt, yt, centres = make_blobs(96, seed=7)
        with torch.no_grad():
            accuracy = float((net(xt).argmax(1) == yt).float().mean())
        assert accuracy >= 0.9, f"the blob model did not learn its task (accuracy {accuracy:.2f})"
        blob = np.nonzero(yt.numpy() == 1)[0][:24]
        yield net, xt[blob], centres[blob]
    finally:
        torch.set_num_threads(threads)


def _peak_distance(heat: np.ndarray, centre) -> float:
    py, px = np.unravel_index(np.argmax(heat), heat.shape)
    return float(np.hypot(py - centre[0], px - centre[1]))


def _concentration(heat: np.ndarray, centre, radius: float = 10.0) -> float:
    """Share of the heat within `radius` of the blob, divided by that disk's share of the image:
    1 = no preference for the blob, higher = heat gathers on it."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disk = np.hypot(yy - centre[0], xx - centre[1]) <= radius
    total = heat.sum()
    return 0.0 if total <= 0 else float(heat[disk].sum() / total / disk.mean())


# Peak tolerance: Grad-CAM's map has one value per 8x8 cell of this network's last stage, so
# "on the blob" means in the blob's cell or the next (12 px); pixel-wise methods get 8 px.
@pytest.mark.parametrize("method, params, peak_px", [
    ("gradcam", {}, 12.0),
    ("ig", {"steps": 16}, 8.0),
    ("occlusion", {}, 8.0),
])
def test_heatmap_lies_on_the_blob(trained, method, params, peak_px):
    net, x, centres = trained
    ex = explain((net, "simple_cnn"), x, method, targets=1, **params)
    peaks = np.array([_peak_distance(h, c) for h, c in zip(ex.heatmaps, centres)])
    conc = np.array([_concentration(h, c) for h, c in zip(ex.heatmaps, centres)])
    assert np.mean(peaks <= peak_px) >= 0.6, f"{method}: peak on the blob in {np.mean(peaks <= peak_px):.0%} of images"
    assert np.mean(conc >= 2.5) >= 0.9, f"{method}: heat gathers on the blob in {np.mean(conc >= 2.5):.0%} of images"


def test_target_class_changes_where_grad_cam_looks(trained):
    """Explaining 'no blob' must not highlight the blob the way explaining 'blob' does."""
    net, x, centres = trained
    blob = explain((net, "simple_cnn"), x, "gradcam", targets=1).heatmaps
    none = explain((net, "simple_cnn"), x, "gradcam", targets=0).heatmaps
    assert np.abs(blob - none).mean() > 0.1
    c1 = np.median([_concentration(h, c) for h, c in zip(blob, centres)])
    c0 = np.median([_concentration(h, c) for h, c in zip(none, centres)])
    assert c0 < 1.0 < 2.5 < c1


@pytest.mark.parametrize("method, params", [
    ("gradcam++", {}), ("hirescam", {}), ("layercam", {}), ("scorecam", {}), ("eigencam", {}), ("saliency", {}),
    ("gradshap", {"samples": 8}), ("lime", {"samples": 100}), ("kernelshap", {"samples": 100}),
])
def test_every_other_method_gathers_heat_on_the_blob(trained, method, params):
    net, x, centres = trained
    ex = explain((net, "simple_cnn"), x, method, targets=1, **params)
    conc = np.array([_concentration(h, c) for h, c in zip(ex.heatmaps, centres)])
    assert np.mean(conc >= 2.5) >= 0.75, f"{method}: heat gathers on the blob in {np.mean(conc >= 2.5):.0%} of images"


def test_random_baseline_does_not_pass_the_same_check(trained):
    """The random-weights CAM shows no preference for the blob: the check tells a real map from noise."""
    net, x, centres = trained
    ex = explain((net, "simple_cnn"), x, "random", seed=0)
    conc = np.array([_concentration(h, c) for h, c in zip(ex.heatmaps, centres)])
    assert np.median(conc) < 1.5


def test_localisation_method_points_at_the_blob(trained):
    """The registered localisation map (HiResCAM at the stage of stride 16, which is this small
    network's last stage, 8 x 8) puts its peak on the blob and states its resolution."""
    from tumorlens.explain.methods import LOCALISATION_METHOD, REGISTRY, localisation_note, map_resolution

    net, x, centres = trained
    ex = explain((net, "simple_cnn"), x, LOCALISATION_METHOD, targets=1)
    assert ex.layer == "features.2"  # stride 8 here: the nearest stage to 16
    peaks = np.array([_peak_distance(h, c) for h, c in zip(ex.heatmaps, centres)])
    assert np.mean(peaks <= 12.0) >= 0.6
    meta = REGISTRY[LOCALISATION_METHOD].metadata
    assert meta["control_pointing_game"] >= 0.9 > meta["control_pointing_game_gradcam"]
    assert map_resolution(LOCALISATION_METHOD, 224) == 14 and map_resolution("ig", 224) is None
    assert "14 x 14 at 224 px" in localisation_note(224)
