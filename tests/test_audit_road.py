"""ROAD (remove and debias) with maps whose faithfulness is known."""

import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.audit.faithfulness import road
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import TumorModel

S = 32


class PatchModel(nn.Module):
    """P(class 1) is high only when a known 6x6 patch is bright: the truly important pixels."""

    def forward(self, x):
        d = x[:, 0, 4:10, 4:10].mean(dim=(1, 2)) - 1.5  # z-scored: bright patch 2.0, grey 0.3 -> -0.8
        return torch.stack([-d, d], dim=1) * 3


def _case():
    model = TumorModel(net=PatchModel(), arch="test", classes=["a", "b"], recipe=PreprocessRecipe(size=S))
    rng = np.random.default_rng(0)
    img = np.clip(0.3 + rng.normal(0, 0.03, (3, S, S)), 0, 1).astype(np.float32)
    img[:, 4:10, 4:10] = 1.0
    right = np.zeros((S, S), np.float32)
    right[3:11, 3:11] = 1
    right += np.linspace(0, 0.01, S * S, dtype=np.float32).reshape(S, S)  # no ties
    wrong = np.zeros((S, S), np.float32)
    wrong[20:30, 20:30] = 1
    wrong += np.linspace(0, 0.01, S * S, dtype=np.float32).reshape(S, S)
    return model, img, np.stack([right, wrong, 1 - right])


def test_road_rewards_the_right_map():
    model, img, heat = _case()
    r = road(model, img, heat, np.array([1, 1, 1]), percentiles=(50, 80, 95))
    assert r.morf.shape == (3,) and r.percentiles == (50, 80, 95)
    # removing the patch first drops P(b); removing it last keeps P(b)
    assert r.morf[0] < -0.3 and abs(r.lerf[0]) < 0.05
    # the map pointing elsewhere leaves the patch for the end under MoRF
    assert r.morf[1] > r.morf[0] + 0.3
    # the inverted map is the worst: its least relevant pixels are the patch
    assert r.lerf[2] < -0.3
    assert r.combined[0] > r.combined[1] > r.combined[2]


def test_road_repeats_with_a_seed_and_leaves_the_global_generator():
    model, img, heat = _case()
    state = torch.random.get_rng_state()
    a = road(model, img[:1], heat[:1], np.array([1]), percentiles=(50,), seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = road(model, img[:1], heat[:1], np.array([1]), percentiles=(50,), seed=3)
    np.testing.assert_array_equal(a.morf, b.morf)


def test_road_checks_shapes():
    model, img, heat = _case()
    with pytest.raises(ValueError, match="must match"):
        road(model, img, heat[:, :16], np.array([1, 1, 1]))
