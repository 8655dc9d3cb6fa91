"""Sanity check and deletion/insertion curves with explainers whose behaviour is known."""

import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.audit.faithfulness import (
    curve_endpoints,
    deletion_insertion,
    pixel_order,
)
from tumorlens.audit.sanity import cascading_randomisation, randomisable_layers
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.registry import build_model

S = 32


def gradient_map(model, x, targets):
    """|d score / d input|: depends on the weights, so randomising them must change it."""
    x = x.clone().requires_grad_(True)
    out = model.net(x)
    out[torch.arange(len(x)), torch.as_tensor(targets)].sum().backward()
    g = x.grad.abs()[:, 0].numpy()
    return g / g.reshape(len(g), -1).max(1)[:, None, None]


def edge_map(model, x, targets):
    """Image edges, whatever the model: the kind of map the check exists to catch."""
    img = x[:, 0].numpy()
    g = np.hypot(*np.gradient(img, axis=(1, 2)))
    return g / g.reshape(len(g), -1).max(1)[:, None, None]


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    net = build_model("simple_cnn", 2).eval()
    return TumorModel(net=net, arch="simple_cnn", classes=["a", "b"], recipe=PreprocessRecipe(size=S))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:S, :S]
    imgs = []
    for i in range(4):
        img = (np.hypot(yy - 16, xx - 16) < 12) * 0.5 + rng.normal(0, 0.05, (S, S))
        img[8 + i : 14 + i, 10:16] = 1.0
        imgs.append(img)
    return torch.from_numpy(((np.stack(imgs) - 0.5) / 0.25)[:, None].astype(np.float32))


def test_layers_are_listed_input_to_output(cnn):
    layers = randomisable_layers(cnn.net)
    assert layers[0] == "features.0.0" and layers[-1] == "classifier"


def test_model_dependent_map_passes_and_edge_map_fails(cnn, batch):
    t = np.zeros(len(batch), int)
    ok = cascading_randomisation(cnn, batch, t, gradient_map, "gradient")
    bad = cascading_randomisation(cnn, batch, t, edge_map, "edges")
    assert ok.passed, ok.message
    assert not bad.passed and "FAILED" in bad.message
    assert bad.final_spearman == pytest.approx(1.0) and bad.final_ssim == pytest.approx(1.0)
    assert ok.steps[0]["top_layer_reached"] == "classifier"
    assert ok.steps[-1]["layers_randomised"] == ok.steps[-1]["of_layers"]
    # the original model is untouched
    assert cnn.net.classifier.weight.requires_grad and np.allclose(gradient_map(cnn, batch, t), gradient_map(cnn, batch, t))


class PatchModel(nn.Module):
    """P(class 1) is high only when a known 6x6 patch is bright: the truly important pixels."""

    def forward(self, x):
        d = x[:, 0, 4:10, 4:10].mean(dim=(1, 2)) - 1.5  # z-scored: bright patch 2.0, grey 0.3 -> -0.8
        return torch.stack([-d, d], dim=1) * 3


def test_deletion_and_insertion_reward_the_right_map():
    model = TumorModel(net=PatchModel(), arch="test", classes=["a", "b"], recipe=PreprocessRecipe(size=S))
    img = np.full((2, S, S), 0.3, np.float32)
    img[:, 4:10, 4:10] = 1.0
    right = np.zeros((S, S), np.float32)
    right[4:10, 4:10] = 1
    wrong = np.zeros((S, S), np.float32)
    wrong[20:30, 20:30] = 1
    c = deletion_insertion(model, img, np.stack([right, wrong]), np.array([1, 1]), fills=np.zeros(2), n_steps=8)
    assert c.deletion.shape == (2, 9) and c.fractions[-1] == 1.0
    assert c.deletion_auc[0] < c.deletion_auc[1] - 0.1
    assert c.insertion_auc[0] > c.insertion_auc[1] + 0.1
    assert c.deletion[0, 0] == pytest.approx(c.deletion[1, 0])  # same start
    # the fixed ends, computed once and shared between explainers, give the same curves
    ends = curve_endpoints(model, img, np.array([1, 1]), np.zeros(2))
    c2 = deletion_insertion(model, img, np.stack([right, wrong]), np.array([1, 1]), fills=np.zeros(2), n_steps=8,
                            endpoints=ends)
    assert np.allclose(c.deletion, c2.deletion) and np.allclose(c.insertion, c2.insertion)
    assert c.insertion[0, -1] == pytest.approx(c.deletion[0, 0])  # insertion ends at the original


def test_pixel_order_breaks_ties_but_keeps_ranks():
    h = np.array([[0.0, 1.0], [0.5, 1.0]])
    order = pixel_order(h)
    assert set(order[:2]) == {1, 3} and order[2] == 2 and order[3] == 0
