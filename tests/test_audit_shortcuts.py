"""Shortcut test verdicts on predictions whose answer is known."""

import numpy as np

from tumorlens.anatomy.regions import Regions
from tumorlens.audit.shortcuts import blank_brain, brain_only, shortcut_test

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def test_blanking_keeps_the_right_parts():
    yy, xx = np.mgrid[:32, :32]
    r = np.hypot(yy - 16, xx - 16)
    reg = Regions.from_masks(r <= 12, r <= 9)
    img = np.random.default_rng(0).uniform(0.2, 1, (32, 32)).astype(np.float32)
    a, b = blank_brain(img, reg, 0.01), brain_only(img, reg, 0.01)
    assert (a[reg.brain] == 0.01).all() and np.array_equal(a[~reg.brain], img[~reg.brain])
    assert (b[~reg.brain] == 0.01).all() and np.array_equal(b[reg.brain], img[reg.brain])


def test_model_right_without_the_brain_is_flagged():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)
    blanked = np.where(rng.random(200) < 0.8, truth, rng.integers(0, 4, 200))
    r = shortcut_test(truth, truth, blanked, truth, CLASSES)
    assert r["flagged"] and r["binomial_p"] < 1e-10
    assert r["message"].startswith("SHORTCUT")
    assert r["accuracy"]["full"] == 1.0


def test_constant_guess_on_blanked_images_is_not_a_shortcut_even_with_imbalance():
    truth = np.array([2] * 120 + [0] * 30 + [1] * 30 + [3] * 20)  # 60 % notumor
    blanked = np.full(len(truth), 2)  # blank brain -> "no tumor": right 60 % of the time
    r = shortcut_test(truth, truth, blanked, truth, CLASSES)
    assert r["chance"] == 0.6 and r["accuracy"]["brain_blanked"] == 0.6
    assert not r["flagged"] and r["message"].startswith("passed")
    assert r["balanced_accuracy"]["brain_blanked"] == 0.25
    assert r["blanked_prediction_share"]["notumor"] == 1.0


def test_small_edge_above_chance_is_reported_but_not_flagged():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 2000)
    blanked = np.where(rng.random(2000) < 0.1, truth, (truth + 1) % 4)  # 10 % right vs ~27 % chance... below
    r = shortcut_test(truth, truth, blanked, truth, CLASSES)
    assert not r["flagged"]
    blanked = np.where(rng.random(2000) < 0.12, truth, rng.integers(0, 4, 2000))  # ~34 %: above, within margin
    r = shortcut_test(truth, truth, blanked, truth, CLASSES)
    assert not r["flagged"] and r["binomial_p"] < 0.01 and "slightly above chance" in r["message"]


def test_no_labels():
    assert shortcut_test(np.array([], int), [], [], [], CLASSES)["flagged"] is False
