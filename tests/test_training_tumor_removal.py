"""Issue 18's training options against what the audit found: tumor-removed counterfactual examples
(relabelled tumor-free, removed by another method than the audit's) and random display windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tumorlens.audit.counterfactuals import remove_tumor
from tumorlens.cli import app
from tumorlens.data.synthetic import make_phantoms
from tumorlens.models import load_model
from tumorlens.training.acquisition import random_window
from tumorlens.training.tumor_removal import TumorRemoval, mirror_column, remove_by_mirror, tumor_free_class

CLASSES = ("glioma", "meningioma", "notumor")


@pytest.fixture(scope="module")
def phantoms():
    samples = make_phantoms(36, classes=CLASSES, size=64, seed=7)
    for s in samples.samples:
        s.patient_id = None
    return samples


def _symmetric_slice(size=64):
    yy, xx = np.mgrid[:size, :size]
    brain = ((yy - 32) / 26) ** 2 + ((xx - 31.5) / 22) ** 2 < 1
    texture = 0.4 + 0.1 * np.cos(yy / 3.0) * np.cos((xx - 31.5) / 4.0)  # symmetric about column 31.5
    return np.where(brain, texture, 0.0).astype(np.float32), brain


def test_a_lateral_tumor_is_replaced_by_the_mirrored_healthy_hemisphere():
    healthy, brain = _symmetric_slice()
    tumor = np.zeros_like(brain)
    tumor[26:34, 12:20] = True
    image = np.where(tumor, 1.0, healthy).astype(np.float32)
    removed = remove_by_mirror(image, tumor, mirror_column(brain), brain)
    # the tumor is gone: what is there now is the healthy tissue of the other side
    assert np.abs(removed - healthy)[tumor].max() < 0.02
    # far from the tumor nothing moves
    far = np.ones_like(brain)
    far[6:54, 0:40] = False  # tumor + 6 px dilation + the blended rim
    np.testing.assert_array_equal(removed[far], image[far])


def test_a_midline_tumor_gets_tissue_from_elsewhere_in_the_brain_and_no_tumor_brightness_is_left():
    healthy, brain = _symmetric_slice()
    tumor = np.zeros_like(brain)
    tumor[40:48, 28:36] = True  # its mirror is itself
    image = np.where(tumor, 1.0, healthy).astype(np.float32)
    removed = remove_by_mirror(image, tumor, mirror_column(brain), brain, rng=np.random.default_rng(0))
    assert removed[tumor].max() < 0.6 and abs(removed[tumor].mean() - healthy[brain].mean()) < 0.1
    # the training removal is not the audit's (which the audit measures with): different pixels
    assert np.abs(removed - remove_tumor(image, tumor)).max() > 0.05


def test_removal_relabels_about_p_of_tumor_images_and_never_a_tumor_free_or_maskless_one(phantoms):
    labels = phantoms.label_indices()
    target = tumor_free_class(list(phantoms.classes))
    masks = np.stack([s.mask if s.mask is not None else np.zeros((64, 64), bool) for s in phantoms.samples])
    brains = np.stack([s.meta["brain_mask"] for s in phantoms.samples])
    removal = TumorRemoval(masks, brains, target, p=0.4, rng=np.random.default_rng(0))
    relabelled, tumor_draws = 0, 0
    for _ in range(10):
        for i, s in enumerate(phantoms.samples):
            image = s.image / s.image.max()
            out, label = removal(image, i, int(labels[i]))
            if labels[i] == target or not masks[i].any():
                assert label == labels[i] and out is image
                continue
            tumor_draws += 1
            if label == target:
                relabelled += 1
                assert out[masks[i]].mean() < image[masks[i]].mean()  # the bright blob went
            else:
                assert out is image
    assert tumor_draws > 0 and 0.3 < relabelled / tumor_draws < 0.5


def test_a_class_set_without_a_tumor_free_class_is_refused_with_the_names_it_knows():
    with pytest.raises(ValueError, match="notumor"):
        tumor_free_class(["glioma", "meningioma", "pituitary"])


def test_random_window_saturates_part_of_the_range_and_stays_in_range():
    image = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64)
    torch.manual_seed(0)
    outs = [random_window(image, p=1.0) for _ in range(20)]
    for out in outs:
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        assert np.all(np.diff(out.ravel()) >= 0)  # a window is monotone: order is kept
    saturated = [((o == 0) | (o == 1)).mean() for o in outs]
    assert max(saturated) > 0.1
    assert all(random_window(image, p=0.0) is image for _ in range(5))


def test_train_cli_with_tumor_removal_records_mask_sources_and_the_preset(tmp_path, phantoms, monkeypatch):
    import tumorlens.data.sources as sources

    monkeypatch.setattr(sources, "open_dataset", lambda data, class_map=None: phantoms)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", "synthetic", "--out", str(out), "--model", "simple_cnn", "--size", "48", "--epochs", "1",
        "--max-steps", "2", "--batch-size", "8", "--val-fraction", "0.25", "--intensity", "head_rank",
        "--augment", "acquisition_window", "--tumor-removal-p", "0.3",
    ])
    assert result.exit_code == 0, result.output
    provenance = load_model(out / "model.pt").provenance
    assert provenance["config"]["tumor_removal_p"] == 0.3 and provenance["config"]["augment"] == "acquisition_window"
    counts = provenance["tumor_removal_masks"]
    # the phantoms carry expert masks: the segmenter is not needed
    assert counts["expert"] > 0 and counts["predicted"] == 0 and counts["with_tumor"] > 0
    assert sum(counts["with_tumor_by_class"]) == counts["with_tumor"]
    # the relabelling's label shift is undone in the saved model: the tumor-free class is pushed down
    shift = dict(zip(CLASSES, provenance["tumor_removal_logit_shift"]))
    assert shift["notumor"] < 0 < shift["glioma"] and shift["meningioma"] > 0


def test_bad_tumor_removal_options_exit_with_a_message_before_training(tmp_path, phantoms, monkeypatch):
    import tumorlens.data.sources as sources

    monkeypatch.setattr(sources, "open_dataset", lambda data, class_map=None: phantoms)
    base = ["train", "--data", "synthetic", "--out", str(tmp_path / "r"), "--model", "simple_cnn", "--size", "48"]
    result = CliRunner().invoke(app, base + ["--tumor-removal-p", "1.5"])
    assert result.exit_code == 2 and "--tumor-removal-p" in result.output
    result = CliRunner().invoke(app, base + ["--tumor-removal-p", "0.2", "--segmenter", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "no segmenter" in result.output


def test_slices_without_expert_masks_get_the_segmenters_masks(phantoms):
    """Kaggle has no masks: the bundled segmenter gives them, and only for tumor slices."""
    from tumorlens.data.preprocess import PreprocessRecipe
    from tumorlens.data.sample import Sample, SampleSet
    from tumorlens.training.tumor_removal import training_tumor_masks

    maskless = SampleSet([Sample(image=s.image, label=s.label) for s in phantoms.samples[:12]],
                         classes=list(phantoms.classes))
    labels = maskless.label_indices()
    target = tumor_free_class(list(maskless.classes))
    masks, counts = training_tumor_masks(maskless, PreprocessRecipe(size=48), labels, target)
    assert counts["expert"] == 0 and counts["predicted"] == int((labels != target).sum())
    assert masks.shape == (12, 48, 48) and not masks[labels == target].any()


def test_the_label_shift_correction_turns_training_priors_back_into_the_datas():
    """A model that only learned the (relabelled) training priors predicts the data's after the correction."""
    from tumorlens.models.registry import build_model
    from tumorlens.training.tumor_removal import removal_label_shift, undo_removal_label_shift

    counts, removable, p = np.array([100.0, 100.0, 200.0]), np.array([100.0, 50.0, 0.0]), 0.2
    seen = np.array([80.0, 90.0, 230.0])  # 20 glioma and 10 meningioma slices relabelled notumor per epoch
    shift = removal_label_shift(counts, removable, target=2, p=p)
    np.testing.assert_allclose(shift, np.log(counts) - np.log(seen))

    net = build_model("simple_cnn", 3).eval()
    with torch.no_grad():  # no evidence from the image: the logits are the training priors
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.as_tensor(np.log(seen / seen.sum())))
    undo_removal_label_shift(net, "simple_cnn", list(CLASSES), counts, removable, p)
    probs = torch.softmax(net(torch.rand(2, 1, 32, 32)), 1).detach().numpy()
    np.testing.assert_allclose(probs, np.tile(counts / counts.sum(), (2, 1)), rtol=1e-5)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18", "efficientnet_b0", "efficientnet_lite0"])
def test_final_linear_is_the_layer_that_gives_the_class_logits(name):
    from tumorlens.models.registry import build_model, final_linear

    layer = final_linear(build_model(name, 3), name)
    assert isinstance(layer, torch.nn.Linear) and layer.out_features == 3
