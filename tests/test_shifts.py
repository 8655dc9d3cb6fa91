"""The fixed acquisition shifts (TorchIO) and a model's accuracy under them."""

import numpy as np
import pytest
import torch
from torch import nn

from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms
from tumorlens.models.checkpoint import TumorModel
from tumorlens.shifts import (
    TRANSFORM_BATCH,
    ShiftEvaluation,
    acquired_images,
    evaluate_under_shifts,
    renormalize01,
    shift_by_name,
    shift_metrics,
    standard_shifts,
)

RECIPE = PreprocessRecipe(size=64, clip_low=0.0, clip_high=100.0)


@pytest.fixture(scope="module")
def displays():
    ph = make_phantoms(12, size=64, seed=3)
    return np.stack([RECIPE.display(s.image) for s in ph.samples])


class MeanBrightness(nn.Module):
    """Reads only the mean intensity of the (z-scored) image: 'bright' above a threshold."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - self.threshold
        return torch.stack([-50 * m, 50 * m], dim=1)


class Constant(nn.Module):
    def forward(self, x):
        return torch.tensor([[1.0, 0.0]]).repeat(len(x), 1)


def model_of(net):
    return TumorModel(net=net, arch="test", classes=["dark", "bright"], recipe=RECIPE)


def test_the_set_covers_the_issue_and_names_its_library():
    names = [s.name for s in standard_shifts()]
    for required in ("gamma 0.6", "gamma 1.6", "contrast up", "brightness up", "bias field", "gaussian noise",
                     "resolution x2", "resolution x3", "jpeg 50", "rotate 10 scale 0.9", "ghosting", "motion", "spike"):
        assert required in names
    assert len(set(names)) == len(names)
    for s in standard_shifts():
        assert s.library == ("pillow" if s.name.startswith("jpeg") else "torchio")
    with pytest.raises(ValueError, match="unknown shift"):
        shift_by_name("solarize")


def test_every_shift_changes_the_image_keeps_its_shape_and_is_repeatable(displays):
    for s in standard_shifts():
        a = s(displays, 0)
        b = shift_by_name(s.name)(displays, 0)
        assert a.shape == displays.shape and a.dtype == np.float32, s.name
        assert np.isfinite(a).all(), s.name
        np.testing.assert_array_equal(a, b, err_msg=s.name)
        r = renormalize01(RECIPE, a)
        assert r.min() >= 0 and r.max() <= 1, s.name
        assert np.abs(r - displays).mean() > 0.003, f"{s.name} leaves the image (almost) unchanged"


def test_gamma_is_the_power_law_and_geometry_keeps_the_head_centred(displays):
    np.testing.assert_allclose(shift_by_name("gamma 0.6")(displays), displays ** 0.6, atol=1e-5)
    rot = shift_by_name("rotate 10 scale 0.9")(displays)
    # zoomed out by 0.9 about the centre: the bright head shrinks, its centre of mass stays
    for im, r in zip(displays[:3], rot[:3]):
        yy, xx = np.mgrid[:64, :64]
        c0 = ((yy * im).sum() / im.sum(), (xx * im).sum() / im.sum())
        c1 = ((yy * r).sum() / r.sum(), (xx * r).sum() / r.sum())
        assert np.hypot(c0[0] - c1[0], c0[1] - c1[1]) < 2.5
        assert (r > 0.1).sum() < (im > 0.1).sum()


def test_noise_differs_between_batches_but_not_between_runs(displays):
    noise = shift_by_name("gaussian noise")
    assert not np.array_equal(noise(displays, 0), noise(displays, 1))
    np.testing.assert_array_equal(noise(displays, 1), shift_by_name("gaussian noise")(displays, 1))
    assert not np.array_equal(noise(displays, 0), shift_by_name("gaussian noise", seed=1)(displays, 0))


def test_metrics_by_hand():
    truth = np.array([0, 0, 1, 1, 1])
    clean = np.array([0, 0, 1, 1, 0])
    shifted = np.array([0, 1, 1, 0, 0])
    m = shift_metrics(truth, clean, shifted, ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["changed"] == pytest.approx(2 / 5)
    assert m["per_class"]["a"] == {"n": 2, "accuracy": 0.5, "changed": 0.5}
    assert m["per_class"]["b"]["accuracy"] == pytest.approx(1 / 3)
    # macro-F1: class a precision 1/3 recall 1/2 -> 0.4; class b precision 1/2 recall 1/3 -> 0.4
    assert m["macro_f1"] == pytest.approx(0.4)
    sub = shift_metrics(truth, clean, shifted, ["a", "b"], mask=np.array([1, 1, 0, 0, 0], bool))
    assert sub["n"] == 2 and sub["accuracy"] == 0.5 and "b" not in sub["per_class"]
    assert shift_metrics(truth, clean, shifted, ["a", "b"], mask=np.zeros(5, bool))["accuracy"] is None


def test_a_brightness_reader_breaks_under_gamma_and_a_constant_model_never_changes(displays):
    z = RECIPE.normalize(displays).mean(axis=(1, 2))
    threshold = float(np.median(z))
    truth = (z > threshold).astype(np.int64)
    ev = evaluate_under_shifts(model_of(MeanBrightness(threshold)), displays, truth, progress=False)
    assert ev.clean()["accuracy"] == 1.0
    by = {m["name"]: m for m in ev.metrics()}
    assert by["gamma 0.6"]["accuracy"] <= 0.6 and by["gamma 0.6"]["per_class"]["bright"]["accuracy"] == 1.0
    assert by["gamma 0.6"]["changed"] == pytest.approx(1 - by["gamma 0.6"]["accuracy"])
    assert by["gamma 1.6"]["per_class"]["dark"]["accuracy"] == 1.0
    assert ev.model_passes == len(displays) * (len(ev.shifts) + 1)
    assert ev.seconds_model > 0 and ev.cost_ratio >= 1.0

    const = evaluate_under_shifts(model_of(Constant()), displays, truth, progress=False)
    assert all(m["changed"] == 0 and m["accuracy"] == const.clean()["accuracy"] for m in const.metrics())


def test_clean_probabilities_given_are_not_recomputed_and_batches_cover_every_image(displays):
    many = np.concatenate([displays] * 6)  # 72 images: more than one transform batch
    assert len(many) > TRANSFORM_BATCH
    truth = np.zeros(len(many), np.int64)
    clean = np.tile([[0.9, 0.1]], (len(many), 1))
    shifts = [shift_by_name("gamma 0.6"), shift_by_name("jpeg 50")]
    ev = evaluate_under_shifts(model_of(Constant()), many, truth, shifts, clean_probs=clean, progress=False)
    assert ev.model_passes == len(many) * 2
    assert [m["n"] for m in ev.metrics()] == [len(many)] * 2
    assert all(m["accuracy"] == 1.0 for m in ev.metrics())


def test_bad_input_is_refused(displays):
    with pytest.raises(ValueError, match="labels"):
        evaluate_under_shifts(model_of(Constant()), displays, np.zeros(3, np.int64), progress=False)
    with pytest.raises(ValueError, match="display images"):
        evaluate_under_shifts(model_of(Constant()), displays[0], np.zeros(1, np.int64), progress=False)


def test_a_recipe_with_an_intensity_step_gets_it_after_the_shift(displays):
    class Ranked(PreprocessRecipe):
        # stands in for a recipe whose display image is a monotone map of the acquired one
        def from_acquired(self, img01):
            return self.scale01(img01) ** 2

        def acquired(self, raw):
            return self.scale01(self.geometry(raw))  # steps 1-3 (PreprocessRecipe.acquired itself)

    recipe = Ranked(size=64, clip_low=0.0, clip_high=100.0)
    np.testing.assert_allclose(renormalize01(recipe, displays[:2]), displays[:2] ** 2, atol=1e-6)
    ph = make_phantoms(2, size=64, seed=3)
    np.testing.assert_allclose(acquired_images(recipe, [s.image for s in ph.samples]), displays[:2])


def test_parts_evaluated_with_their_start_equal_one_run_and_examples_are_kept(displays):
    many = np.concatenate([displays] * 6)  # 72 images
    truth = np.tile(np.arange(2), len(many) // 2)
    shifts = [shift_by_name("gaussian noise"), shift_by_name("gamma 1.6")]
    z = RECIPE.normalize(displays).mean(axis=(1, 2))
    model = model_of(MeanBrightness(float(np.median(z))))
    whole = evaluate_under_shifts(model, many, truth, shifts, keep=[3, 70], progress=False)
    parts = ShiftEvaluation.concat([
        evaluate_under_shifts(model, many[:64], truth[:64], shifts, keep=[3], progress=False),
        evaluate_under_shifts(model, many[64:], truth[64:], shifts, start=64, keep=[6], progress=False)])
    for name in whole.preds:
        np.testing.assert_array_equal(whole.preds[name], parts.preds[name])
        np.testing.assert_allclose(whole.probs[name], parts.probs[name], atol=1e-6)
    assert sorted(parts.kept) == [3, 70] and sorted(whole.kept) == [3, 70]
    np.testing.assert_array_equal(whole.kept[70]["gaussian noise"], parts.kept[70]["gaussian noise"])
    # the kept image is what the model saw: the same noise as shifting that batch directly
    direct = renormalize01(RECIPE, shift_by_name("gaussian noise")(many[64:], 64))[6]
    np.testing.assert_allclose(whole.kept[70]["gaussian noise"], direct, atol=1e-6)
    assert parts.model_passes == whole.model_passes == len(many) * 3


def test_a_batch_gives_what_each_slice_gives_alone(displays):
    # the stacked layout must never mix slices: every shift but the (position-seeded) noise
    for s in standard_shifts():
        if s.name == "gaussian noise":
            continue
        batch = s(displays[:4])
        alone = np.stack([s(displays[i:i + 1])[0] for i in range(4)])
        np.testing.assert_allclose(batch, alone, atol=2e-4, err_msg=s.name)
