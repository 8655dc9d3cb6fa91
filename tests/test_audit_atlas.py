"""The attention atlas on heatmaps whose hot spots are known."""

import numpy as np
import pytest

from tumorlens.audit.atlas import attention_atlas, region_energy

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
S = 48


def region_map():
    yy, xx = np.mgrid[:S, :S]
    r = np.hypot(yy - S / 2, xx - S / 2)
    lm = np.zeros((S, S), np.uint8)
    lm[r <= 20] = 1
    lm[r <= 16] = 2
    return lm


def blob(y, x, sigma=2.0):
    yy, xx = np.mgrid[:S, :S]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_region_energy_shares():
    lm = region_map()
    e = region_energy(blob(2, 2), lm)  # corner: background
    assert e["background"] > 0.99 and np.isnan(e["tumor"])
    tumor = np.zeros((S, S), bool)
    tumor[20:28, 20:28] = True
    e = region_energy(blob(24, 24), lm, tumor)
    assert e["brain"] > 0.99 and e["tumor"] > 0.9
    assert sum(e[k] for k in ("background", "skull", "brain")) == pytest.approx(1.0)
    assert np.isnan(region_energy(np.zeros((S, S)), lm)["brain"])
    with pytest.raises(ValueError, match="differs"):
        region_energy(np.zeros((4, 4)), lm)


def test_a_fixed_spot_in_one_class_is_the_hot_spot_of_its_atlas_tile():
    rng = np.random.default_rng(0)
    lm = region_map()
    heat, imgs, maps, truth, pred = [], [], [], [], []
    for i in range(40):
        c = i % 4
        if c == 1:  # meningioma calls look at a marker in the top-left corner
            h = blob(3, 3)
        else:  # the others at a tumor somewhere in the brain
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 12)
            h = blob(S / 2 + d * np.sin(a), S / 2 + d * np.cos(a))
        heat.append((h / h.max() * 255).astype(np.uint8))
        imgs.append((rng.uniform(0, 1, (S, S)) * 255).astype(np.uint8))
        maps.append(lm)
        truth.append(c)
        pred.append(1 if c in (1, 3) and i % 8 == 1 else c)
    summary, m = attention_atlas(heat, imgs, maps, None, np.array(truth), np.array(pred), CLASSES)
    men = summary["by_predicted_class"]["meningioma"]
    assert men["hot_spot"]["zone"] == "background" and men["hot_spot"]["y"] <= 6 and men["hot_spot"]["x"] <= 6
    assert men["energy"]["background"] > 0.9 and men["energy"]["tumor"] is None
    assert men["classes"] == {"meningioma": 10}
    gl = summary["by_true_class"]["glioma"]
    assert gl["hot_spot"]["zone"] == "brain" and gl["energy"]["brain"] > 0.9 and gl["n"] == 10
    assert m["by_true_class"]["glioma"]["heatmap"].shape == (S, S)
    assert m["by_true_class"]["glioma"]["heatmap"].mean() == pytest.approx(1.0)  # x uniform
