"""Counterfactual edits and their bookkeeping, with a tiny model whose answer is known."""

import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.audit import counterfactuals as cf
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import TumorModel

S = 48


def scene():
    yy, xx = np.mgrid[:S, :S]
    head = np.hypot(yy - 24, xx - 24) <= 20
    img = np.where(head, 0.45, 0.0).astype(np.float32)
    tumor = np.hypot(yy - 20, xx - 28) <= 4
    img[tumor] = 0.95
    return img, tumor, ~head


class BrightSpotModel(nn.Module):
    """Says 'tumor' exactly when the image holds bright pixels: a model that reads the tumor."""

    def forward(self, x):
        bright = (x > 1.2).float().mean(dim=(1, 2, 3)) * 200  # z-scored 0.8 -> 1.2 with mean .5, std .25
        return torch.stack([-bright + 1, bright - 1], dim=1) * 5


def model():
    return TumorModel(net=BrightSpotModel(), arch="test", classes=["notumor", "tumor"],
                      recipe=PreprocessRecipe(size=S))


def test_remove_tumor_inpaints_from_surroundings():
    img, tumor, _ = scene()
    out = cf.remove_tumor(img, tumor)
    assert out[tumor].max() < 0.6 and abs(out[tumor].mean() - 0.45) < 0.05
    yy, xx = np.mgrid[:S, :S]
    far = np.hypot(yy - 20, xx - 28) > 12
    assert np.array_equal(out[far], img[far])  # nothing else touched


def test_remove_tumor_with_empty_mask_is_identity():
    img, _, _ = scene()
    assert np.array_equal(cf.remove_tumor(img, np.zeros_like(img, bool)), img)


def test_tumor_only_fills_with_background_grey():
    img, tumor, bg = scene()
    img = img + 0.03
    fill = cf.background_value(img, bg)
    assert fill == pytest.approx(0.03)
    out = cf.tumor_only(img, tumor, fill)
    assert np.allclose(out[~tumor], 0.03) and np.array_equal(out[tumor], img[tumor])


def test_table_and_summary_for_a_model_that_reads_the_tumor():
    img, tumor, bg = scene()
    images = np.stack([img, img, np.where(tumor, 0.45, img)])
    tumors = np.stack([tumor, tumor, np.zeros_like(tumor)])
    truth = np.array([1, 1, 0])
    m = model()
    from tumorlens.audit.forward import probabilities01

    p = probabilities01(m, images)
    assert (p.argmax(1) == truth).all()
    df = cf.counterfactual_table(m, images, tumors, truth, p, backgrounds=np.stack([bg] * 3), brains=np.stack([~bg] * 3))
    assert df.loc[0, "delta_drop"] > 0.9  # removing the tumor kills the tumor call
    # the second removal (the training's mirror) agrees for a model that reads the tumor itself
    assert df.loc[0, "delta_drop_mirror"] > 0.9 and df.loc[0, "pred_removed_mirror"] == 0
    assert df.loc[0, "delta_focus"] > 0.9  # the tumor alone is enough
    assert df.loc[0, "pred_removed"] == 0 and df.loc[0, "pred_tumor_only"] == 1
    assert np.isnan(df.loc[2, "delta_drop"]) and df.loc[2, "pred_removed"] == -1
    s = cf.summarise_counterfactuals(df, truth, m.classes, correct=np.array([True, True, True]))
    assert s["all"]["n"] == 2 and s["all"]["delta_drop_mirror_mean"] > 0.9
    assert s["by_class"]["tumor"]["share_prediction_changes_when_removed"] == 1.0
    assert s["misclassified"] == {"n": 0}
    assert "notumor" not in s["by_class"]


def test_mirror_removal_takes_the_other_hemisphere_and_leaves_the_rest():
    img, tumor, bg = scene()
    healthy = np.where(bg, 0.0, 0.45).astype(np.float32)
    out = cf.remove_by_mirror(img, tumor, cf.mirror_column(~bg), ~bg)
    assert np.abs(out - healthy)[tumor].max() < 0.02  # the tumor became the other side's tissue
    assert np.abs(out - img)[bg].max() == 0  # nothing outside the head moved
    np.testing.assert_array_equal(cf.remove_by_mirror(img, np.zeros_like(tumor), 24.0), img)
