"""Per-image attention analysis on hand-made heatmaps whose answer is known."""

import math

import numpy as np
import pytest

from tumorlens.audit import attention as A
from tumorlens.anatomy.regions import Regions

S = 64


def regions_and_tumor():
    yy, xx = np.mgrid[:S, :S]
    r = np.hypot(yy - 32, xx - 32)
    head, brain = r <= 26, r <= 22
    tumor = np.hypot(yy - 28, xx - 38) <= 4
    return Regions.from_masks(head, brain), tumor


def blob(y, x, sigma=2.0):
    yy, xx = np.mgrid[:S, :S]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_heatmap_on_tumor_hits_and_is_focused():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(blob(28, 38), reg, tumor, correct=True)
    assert a.focus == A.FOCUS_TUMOR and a.peak_region == "tumor"
    assert a.pointing_hit == 1.0 and a.peak_tumor_distance_px == 0
    assert a.energy_tumor > 0.8 and a.concentration_tumor > 10
    assert a.flags == []
    shares = a.energy_background + a.energy_skull + a.energy_brain
    assert shares == pytest.approx(1.0, abs=1e-5)


def test_pointing_tolerance_is_in_pixels():
    reg, tumor = regions_and_tumor()
    near = A.analyse_attention(blob(28, 38 + 4 + 3, sigma=1), reg, tumor)  # 3 px right of the tumor edge
    far = A.analyse_attention(blob(28, 38 + 4 + 9, sigma=1), reg, tumor)
    assert near.pointing_hit == 1.0 and near.focus == A.FOCUS_TUMOR
    assert far.pointing_hit == 0.0 and far.focus == A.FOCUS_BRAIN
    assert 8 <= far.peak_tumor_distance_px <= 10


def test_correct_but_focused_on_background_is_flagged():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(blob(6, 6), reg, tumor, correct=True)  # top-left, outside the head, off the frame
    assert a.focus == A.FOCUS_BACKGROUND
    assert A.FLAG_RIGHT_WRONG_REASON in a.flags
    assert a.energy_background > 0.5


def test_wrong_and_on_skull_and_edge():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(blob(32, 32 + 24), reg, tumor, correct=False)  # in the ring
    assert a.peak_region == "skull" and a.focus == A.FOCUS_SKULL
    assert a.flags == [A.FLAG_WRONG_SKULL]
    b = A.analyse_attention(blob(32, 2), reg, None, correct=False)
    assert b.focus == A.FOCUS_BACKGROUND and b.flags == [A.FLAG_WRONG_BACKGROUND]


def test_head_cut_by_the_frame_counts_as_edge():
    full = np.ones((S, S), bool)
    reg = Regions.from_masks(full, full)  # head and brain fill the image
    a = A.analyse_attention(blob(0, 30), reg, None, correct=True)
    assert a.peak_region == "brain" and a.focus == A.FOCUS_SKULL
    assert A.FLAG_RIGHT_WRONG_REASON in a.flags


def test_no_tumor_gives_nan_tumor_measures_and_missed_flag_only_with_tumor():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(blob(40, 25), reg, np.zeros((S, S), bool), correct=True)
    assert math.isnan(a.energy_tumor) and math.isnan(a.pointing_hit) and not a.has_tumor
    assert a.focus == A.FOCUS_BRAIN_UNMARKED and a.flags == []  # "brain", not "brain outside the tumor"
    assert A.analyse_attention(blob(40, 25), reg, None).focus == A.FOCUS_BRAIN_UNMARKED
    b = A.analyse_attention(blob(40, 25), reg, tumor, correct=True)
    assert b.focus == A.FOCUS_BRAIN and b.flags == [A.FLAG_TUMOR_MISSED]


def test_uniform_heatmap_has_concentration_one():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(np.ones((S, S), np.float32), reg, tumor)
    assert a.concentration_brain == pytest.approx(1.0)
    assert a.concentration_tumor == pytest.approx(1.0)


def test_zero_heatmap_does_not_crash():
    reg, tumor = regions_and_tumor()
    a = A.analyse_attention(np.zeros((S, S), np.float32), reg, tumor)
    assert math.isnan(a.energy_brain)


def test_shape_mismatch_is_a_clear_error():
    reg, _ = regions_and_tumor()
    with pytest.raises(ValueError, match="heatmap shape"):
        A.analyse_attention(np.zeros((32, 32)), reg)


def test_row_is_flat():
    reg, tumor = regions_and_tumor()
    row = A.analyse_attention(blob(6, 6), reg, tumor, correct=True).row()
    assert isinstance(row["flags"], str) and row["focus"] == A.FOCUS_BACKGROUND
