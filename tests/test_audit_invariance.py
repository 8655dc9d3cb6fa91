"""Decision invariance and the silhouette version, on predictions and shapes whose answer is known."""

import numpy as np
import pytest

from tumorlens.audit.invariance import decision_invariance, expected_agreement, permutation_pvalue
from tumorlens.anatomy.regions import Regions
from tumorlens.audit.silhouette import silhouette

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def test_expected_agreement_is_the_product_of_answer_rates():
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 1, 1])
    assert expected_agreement(a, b, 2) == pytest.approx(0.5 * 0.25 + 0.5 * 0.75)


def test_independent_edited_answers_pass():
    rng = np.random.default_rng(0)
    full, edited = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    r = decision_invariance(full, edited, CLASSES)
    assert abs(r["unchanged"] - r["expected_if_independent"]) < 0.05
    assert r["status"] == "pass" and not r["flagged"] and r["permutation_p"] > 0.01


def test_decisions_that_survive_the_edit_fail():
    rng = np.random.default_rng(1)
    full = rng.integers(0, 4, 300)
    edited = np.where(rng.random(300) < 0.7, full, rng.integers(0, 4, 300))
    r = decision_invariance(full, edited, CLASSES)
    assert r["flagged"] and r["status"] == "fail" and r["kappa"] > 0.6
    assert r["permutation_p"] < 0.001


def test_a_marker_that_says_one_class_everywhere_fails_although_the_expectation_is_high():
    # issue 16's case: ~93 % called meningioma, 92 % unchanged with the brain blanked
    rng = np.random.default_rng(2)
    full = np.where(rng.random(1311) < 0.93, 1, rng.integers(0, 4, 1311))
    edited = full.copy()
    flip = rng.random(1311) < 0.08
    edited[flip] = rng.integers(0, 4, flip.sum())
    r = decision_invariance(full, edited, CLASSES)
    assert r["unchanged"] > 0.9 and r["expected_if_independent"] > 0.8  # a plain difference looks small
    assert r["flagged"]


def test_a_constant_answer_on_edited_images_is_no_evidence():
    # a clean model calls every blanked image "notumor": unchanged = share of notumor calls = expectation
    full = np.array([0] * 50 + [1] * 50 + [2] * 60 + [3] * 40)
    r = decision_invariance(full, np.full(200, 2), CLASSES)
    assert r["unchanged"] == pytest.approx(0.3) and r["expected_if_independent"] == pytest.approx(0.3)
    assert r["kappa"] == pytest.approx(0.0) and r["permutation_p"] == 1.0 and r["status"] == "pass"
    # and when both sides are the same constant
    r = decision_invariance(np.full(20, 1), np.full(20, 1), CLASSES)
    assert r["status"] == "pass" and r["kappa"] == 0.0


def test_permutation_p_is_a_probability_and_never_zero():
    a = np.arange(100) % 4
    assert permutation_pvalue(a, a, 199) == pytest.approx(1 / 200)


def test_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        decision_invariance([0, 1], [0], CLASSES)
    assert decision_invariance([], [], CLASSES)["flagged"] is False


def test_silhouette_keeps_only_the_outlines():
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    reg = Regions.from_masks(r <= 30, r <= 24)
    s = silhouette(reg)
    assert s.dtype == np.float32 and set(np.unique(s)) == {0.0, 1.0}
    assert s[40, 40] == 0 and s[0, 0] == 0  # inside the brain and the background are empty
    assert s[40, 40 + 30] == 1 and s[40, 40 + 24] == 1  # both outlines are drawn
    assert s[40, 40 + 27] == 0  # the skull between them is not filled
    assert silhouette(Regions.from_masks(np.zeros((20, 20)), np.zeros((20, 20)))).sum() == 0  # no head: blank


def test_background_dependence_finds_the_class_a_background_cue_decides():
    from tumorlens.audit.invariance import background_dependence

    rng = np.random.default_rng(4)
    full = rng.integers(0, 4, 400)
    clean = full.copy()
    wobble = rng.random(400) < 0.06  # a clean model: a few boundary cases flip, any class
    clean[wobble] = rng.integers(0, 4, wobble.sum())
    r = background_dependence(full, clean, CLASSES)
    assert r["status"] == "pass" and r["worst_lost"] < 0.2 and r["changed"] < 0.1
    cue = full.copy()
    men = (full == 1) & (rng.random(400) < 0.85)  # the marker made most meningioma calls
    cue[men] = rng.choice([0, 2, 3], men.sum())
    r = background_dependence(full, cue, CLASSES)
    assert r["flagged"] and r["worst_class"] == "meningioma" and r["worst_lost"] > 0.7
    assert r["lost_by_class"]["glioma"]["lost"] == 0 and r["lost_by_class"]["glioma"]["gained"] > 0
    # a class with too few calls does not decide
    few = np.array([1] * 5 + [0] * 100)
    r = background_dependence(few, np.zeros(105, int), CLASSES)
    assert r["worst_class"] == "glioma" and r["status"] == "pass"


def test_background_dependence_asks_whether_a_loss_could_be_chance():
    from tumorlens.audit.invariance import CLEAN_LOSS_RATE, LOST_FAIL, background_dependence

    # 5 of 10 calls lost: half, but a class that loses CLEAN_LOSS_RATE of its calls at the boundary
    # does that with p = 0.033 (0.13 over 4 classes): not evidence of a cue
    full = np.array([1] * 10 + [0] * 30 + [2] * 30 + [3] * 30)
    edited = full.copy()
    edited[:5] = 0
    r = background_dependence(full, edited, CLASSES)
    assert r["worst_class"] == "meningioma" and r["worst_lost"] == 0.5 >= LOST_FAIL and r["status"] == "pass"
    assert r["worst_p"] > r["alpha"] and r["null_loss_rate"] == CLEAN_LOSS_RATE
    # 8 of 10: that is not chance
    edited[:8] = 0
    r = background_dependence(full, edited, CLASSES)
    assert r["status"] == "fail" and r["failed_classes"] == ["meningioma"] and r["worst_p"] < r["alpha"]
    # a significant loss below LOST_FAIL warns: 18 of 40 (45 %) against 20 %
    full = np.array([1] * 40 + [0] * 60)
    edited = full.copy()
    edited[:18] = 0
    r = background_dependence(full, edited, CLASSES)
    assert r["status"] == "warn"
    # every class losing its calls (a cue per class) fails too: no class is compared with the others
    full = np.repeat(np.arange(4), 16)
    r = background_dependence(full, np.zeros(64, int), CLASSES)
    assert r["status"] == "fail" and set(r["failed_classes"]) == {"meningioma", "notumor", "pituitary"}


def test_replace_background_removes_a_burned_in_cue_and_keeps_the_noise_floor():
    from tumorlens.audit.invariance import replace_background

    rng = np.random.default_rng(0)
    img = np.clip(0.02 + 0.01 * rng.standard_normal((64, 64)), 0, 1).astype(np.float32)
    head = np.zeros((64, 64), bool)
    head[16:48, 16:48] = True
    img[head] = 0.5
    img[2:6, 2:6] = 1.0  # a marker outside the head
    out = replace_background(img, head, 0.02, np.random.default_rng(1))
    assert np.array_equal(out[head], img[head])  # the head is untouched
    assert out[2:6, 2:6].max() < 0.2  # the marker is gone
    assert abs(out[~head].std() - 0.01) < 0.002 and abs(np.median(out[~head]) - 0.02) < 0.002  # the noise floor stays
    flat = np.where(head, 0.5, 0.0).astype(np.float32)
    assert np.array_equal(replace_background(flat, head, 0.0, np.random.default_rng(1)), flat)  # flat stays flat
    again = replace_background(img, head, 0.02, np.random.default_rng(1))
    assert np.array_equal(out, again)  # seeded
