"""The tumor segmenter: metrics, paired augmentation, file format, training and `segment` on
synthetic phantoms and the bundled samples (tiny sizes, so the whole file runs in well under a minute)."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tumorlens.segment.model import (
    Segmenter,
    SegmenterArch,
    SegmenterError,
    build_segmenter,
    drop_small_components,
    load_segmenter,
    save_segmenter,
)
from tumorlens.segment.metrics import dice_iou, false_positive_rate, slice_rows, summarize
from tumorlens.assets import sample_dir
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms
from tumorlens.training.segmentation import PairedAugment, SegTrainConfig, per_image_dice_loss, train_segmenter


def test_dice_iou_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :4] = True  # 40 px
    b[:, 2:6] = True  # 40 px, 20 shared
    d, j = dice_iou(a, b)
    assert d == pytest.approx(0.5) and j == pytest.approx(20 / 60)
    assert dice_iou(a, a) == (1.0, 1.0)
    assert dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    assert dice_iou(a, np.zeros_like(a)) == (0.0, 0.0)
    with pytest.raises(ValueError):
        dice_iou(a, np.zeros((5, 5)))


def test_summary_by_class_and_patient():
    m = np.zeros((4, 4), bool)
    m[:2] = True
    df = slice_rows(["a", "b", "c"], [m, m, ~m], [m, m, m], ["glioma", "glioma", "pituitary"], ["p1", "p1", "p2"])
    s = summarize(df)
    assert s["dice_mean"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["by_class"]["glioma"]["dice_mean"] == 1.0 and s["by_class"]["pituitary"]["dice_mean"] == 0.0
    assert s["by_patient"]["p1"]["n"] == 2 and s["patient_dice_mean"] == pytest.approx(0.5)
    fp = false_positive_rate([m, np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)])
    assert fp["false_positive_rate"] == 0.25 and fp["with_predicted_tumor"] == 1


def test_small_components_are_dropped():
    m = np.zeros((100, 100), bool)
    m[10:40, 10:40] = True  # 900 px = 9 %
    m[80, 80] = True  # 1 px
    out = drop_small_components(m, 0.002)  # 20 px
    assert out[10:40, 10:40].all() and not out[80, 80]
    assert drop_small_components(m, 0).sum() == m.sum()


def test_paired_augment_moves_the_mask_with_the_image():
    recipe = PreprocessRecipe(size=64)
    mask = torch.zeros(6, 1, 64, 64)
    mask[:, :, 10:30, 35:55] = 1  # off-centre, so a flip or shift that missed the mask would show
    image = torch.from_numpy(recipe.normalize(mask.numpy() * 0.8 + 0.1))
    aug = PairedAugment(recipe, p_gamma=1.0)
    g = torch.Generator().manual_seed(0)
    x, m = aug(image, mask, g)
    assert m.unique().tolist() in ([0.0, 1.0], [0.0])  # still a binary mask
    assert not torch.equal(m, mask)  # it did move
    bright = (x * recipe.std + recipe.mean) > (x * recipe.std + recipe.mean).mean((2, 3), keepdim=True)
    for k in range(len(x)):
        d, _ = dice_iou(bright[k, 0].numpy(), m[k, 0].numpy() > 0)
        assert d > 0.9, f"image {k}: the mask and the tumor it marks moved apart (Dice {d:.2f})"


def test_imagenet_encoder_weights_are_the_classifier_wheels():
    from tumorlens.models.registry import build_model

    net = build_segmenter(SegmenterArch(), pretrained="imagenet")
    ref = build_model("efficientnet_lite0", 2, pretrained="imagenet").state_dict()
    enc = net.encoder.model.state_dict()
    for key in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "bn1.running_mean"):
        assert torch.equal(enc[key], ref[key])
    assert enc["conv_stem.weight"].shape[1] == 1  # one-channel MRI input


def test_save_load_roundtrip_and_bad_files(tmp_path):
    recipe = PreprocessRecipe(size=32)
    net = build_segmenter(SegmenterArch()).eval()
    path = save_segmenter(tmp_path / "s.pt", net, SegmenterArch(), recipe, threshold=0.4, min_area=0.01,
                          metrics={"cv": {"dice_mean": 0.9, "folds": 5}}, half=True)
    seg = load_segmenter(path)
    assert seg.threshold == 0.4 and seg.recipe == recipe and seg.summary()["cv_dice_mean"] == 0.9
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        ref = torch.sigmoid(net(x))[:, 0].numpy()
    assert np.abs(seg.probabilities(x) - ref).max() < 0.02  # float16 storage, float32 compute
    masks = seg.predict([np.random.rand(50, 70).astype(np.float32)])
    assert masks[0].shape == (50, 70) and masks[0].dtype == bool

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SegmenterError, match="not a readable"):
        load_segmenter(tmp_path / "junk.pt")
    torch.save({"format": "tumorlens-checkpoint"}, tmp_path / "classifier.pt")
    with pytest.raises(SegmenterError, match="not a tumorlens segmenter"):
        load_segmenter(tmp_path / "classifier.pt")
    with pytest.raises(SegmenterError, match="not found"):
        load_segmenter(tmp_path / "missing.pt")


def test_head_crop_geometry_maps_back_onto_the_slice():
    recipe = PreprocessRecipe(size=32, crop_to_head=True)
    seg = Segmenter(net=build_segmenter(SegmenterArch()), arch=SegmenterArch(), recipe=recipe)
    image = np.zeros((80, 120), np.float32)
    image[20:60, 40:80] = 1.0  # the "head"
    prob = seg.to_image_geometry(np.ones((32, 32), np.float32), image)
    assert prob.shape == (80, 120)
    assert prob[0, 0] == 0 and prob[40, 60] == 1  # ones only inside the head box


def _disks(n, size=64, seed=0):
    """Bright disks on noise, one slice per patient: a task a U-Net learns in a couple of dozen steps."""
    from tumorlens.data.sample import Sample, SampleSet

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        r = rng.uniform(0.12, 0.2) * size
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = 0.3 + 0.1 * rng.standard_normal((size, size))
        img[m] += 0.6
        out.append(Sample(img.astype(np.float32), label=("glioma", "meningioma")[i % 2], mask=m, patient_id=f"p{i}", path=f"d{i}.png"))
    return SampleSet(out, ["glioma", "meningioma"], kind="synthetic")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny segmenter trained on disks: two patient folds, 32 px, from ImageNet weights (24 steps)."""
    out = tmp_path_factory.mktemp("seg")
    samples = _disks(52)
    excluded = out / "heldout.csv"
    first_patients = ["p0", "p1", "p2", "p3"]
    with open(excluded, "w", newline="") as f:
        csv.writer(f).writerows([["pid", "class_name"]] + [[p, "x"] for p in first_patients])
    config = SegTrainConfig(data="disks", out=str(out), size=32, epochs=8, batch_size=8, lr=3e-3, fold=0, folds=2,
                            exclude_patients=str(excluded), threads=2)
    result = train_segmenter(config, samples=samples)
    return result, samples, first_patients


def test_training_learns_and_records_what_it_saw(trained):
    result, samples, excluded = trained
    seg = load_segmenter(result.checkpoint)
    prov = seg.provenance
    assert prov["excluded_patients"] == excluded and prov["excluded_slices"] == 4
    assert prov["n_train_slices"] + prov["n_val_slices"] == len(samples) - 4
    assert seg.recipe.size == 32 and seg.metrics["validation"]["fold"] == 0
    # Predicting everything scores at most 0.22 on these disks, nothing 0; 24 steps reach about 0.75.
    assert result.metrics["validation"]["dice_mean"] > 0.5


def test_segment_command_writes_masks_overlays_and_metrics(trained, tmp_path):
    from tumorlens.cli import app

    result, _, _ = trained
    out = tmp_path / "fig"
    r = CliRunner().invoke(app, ["segment", "--data", str(sample_dir("figshare")), "--out", str(out), "--model", str(result.checkpoint)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["expert_masks"] and m["n_scored"] == 12 and 0 <= m["dice_mean"] <= 1
    assert set(m["by_class"]) == {"glioma", "meningioma", "pituitary"} and m["by_patient"]
    rows = list(csv.DictReader(open(out / "dice.csv")))
    assert len(rows) == 12 and {"dice", "iou", "patient", "class"} <= set(rows[0])
    import cv2

    mask = cv2.imread(str(sorted((out / "masks").glob("*.png"))[0]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert len(list((out / "overlays").glob("*.png"))) == 12

    out2 = tmp_path / "kaggle"
    r = CliRunner().invoke(app, ["segment", "--data", str(sample_dir("kaggle")), "--out", str(out2), "--model", str(result.checkpoint), "--no-overlays"])
    assert r.exit_code == 0, r.output
    m = json.loads((out2 / "metrics.json").read_text())
    assert not m["expert_masks"] and m["tumor_free"]["n_slices"] == 8 and m["n_slices"] == 32
    assert "tumor-free slices with a predicted tumor" in r.output


def test_segment_one_image_and_bad_model(trained, tmp_path):
    from tumorlens.cli import app

    result, _, _ = trained
    image = sorted((sample_dir("kaggle") / "glioma").glob("*.jpg"))[0]
    r = CliRunner().invoke(app, ["segment", "--data", str(image), "--out", str(tmp_path / "one"), "--model", str(result.checkpoint)])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "one" / "masks").glob("*.png"))) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    r = CliRunner().invoke(app, ["segment", "--data", str(image), "--out", str(tmp_path / "x"), "--model", str(bad)])
    assert r.exit_code == 2 and "not a readable tumorlens segmenter" in r.output


def test_per_image_dice_counts_a_missed_small_tumor_as_much_as_a_found_large_one():
    import segmentation_models_pytorch as smp

    mask = torch.zeros(2, 1, 32, 32)
    mask[0, 0, :16, :16] = 1  # large tumor, found
    mask[1, 0, :2, :2] = 1  # 4-pixel tumor, missed
    logits = torch.full_like(mask, -12.0)
    logits[0, 0, :16, :16] = 12.0
    batch = smp.losses.DiceLoss("binary", from_logits=True)(logits, mask).item()
    image = per_image_dice_loss(logits, mask).item()
    assert batch < 0.05  # the batch Dice barely notices the miss
    assert image == pytest.approx(0.5, abs=1e-3)  # one of two tumor slices entirely wrong
    # tumor-free slices are left to the cross-entropy term; a batch without a tumor gives 0 and a gradient
    empty = torch.zeros_like(mask)
    lg = logits.clone().requires_grad_(True)
    loss = per_image_dice_loss(lg, empty)
    loss.backward()
    assert loss.item() == 0.0 and lg.grad is not None
    mixed = torch.cat([mask[:1], empty[:1]])
    assert per_image_dice_loss(logits[:2], mixed).item() == pytest.approx(0.0, abs=1e-3)


def test_dice_option_is_recorded_and_checked(tmp_path):
    from tumorlens.cli import app
    from tumorlens.errors import TumorlensError

    config = SegTrainConfig(data="disks", out=str(tmp_path / "img"), size=32, epochs=1, batch_size=8, fold=0, folds=2,
                            threads=1, max_steps=2, pretrained=None, dice="image")
    result = train_segmenter(config, samples=_disks(16))
    cfg = load_segmenter(result.checkpoint).provenance["config"]
    assert cfg["dice"] == "image"
    assert SegTrainConfig(data="d", out="o").dice == "batch"  # default: the bundled model's loss
    with pytest.raises(TumorlensError, match="--dice must be one of batch, image"):
        train_segmenter(SegTrainConfig(data="disks", out=str(tmp_path / "bad"), dice="pixel"), samples=_disks(4))
    r = CliRunner().invoke(app, ["train-segmenter", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--dice", "pixel"])
    assert r.exit_code == 2 and "--dice must be one of batch, image" in r.output, r.output


def _random_segmenter(size=32):
    return Segmenter(net=build_segmenter(SegmenterArch()).eval(), arch=SegmenterArch(), recipe=PreprocessRecipe(size=size),
                     metrics={"cv": {"dice_mean": 0.8, "folds": 5}})


def test_fill_predicted_masks_says_where_masks_came_from():
    from tumorlens.segment.audit import fill_predicted_masks

    ds = make_phantoms(4, size=40)
    assert fill_predicted_masks(ds, _random_segmenter()).mask_source == "expert"
    for s in ds.samples[:3]:
        s.mask = None
    fill = fill_predicted_masks(ds, _random_segmenter())
    assert (fill.mask_source, fill.n_expert, fill.n_predicted) == ("predicted", 1, 3)
    assert fill.to_dict()["segmenter"]["cv_dice_mean"] == 0.8
    assert all(s.mask is not None and s.mask.shape == s.image.shape for s in ds.samples)
    assert [s.meta["mask_source"] for s in ds.samples] == ["predicted"] * 3 + ["expert"]
    bare = make_phantoms(2, size=40)
    for s in bare.samples:
        s.mask = None
    assert fill_predicted_masks(bare, None).mask_source == "none"


def test_figshare_agreement_matches_the_same_slice_at_another_size():
    import cv2

    from tumorlens.segment.audit import figshare_agreement
    from tumorlens.data.sample import Sample, SampleSet
    from tumorlens.data.sources import open_dataset

    fig = open_dataset(sample_dir("figshare"), progress=False)
    # "Kaggle" copies: the first three figshare slices at 512 px, and one phantom that matches nothing
    big = [Sample(cv2.resize(s.image, (512, 512), interpolation=cv2.INTER_LINEAR), path=f"k{i}.jpg") for i, s in enumerate(fig.samples[:3])]
    other = make_phantoms(1, size=512).samples[0]
    kag = SampleSet(big + [Sample(other.image, path="phantom.png")], [])
    exact = [cv2.resize(s.mask.astype(np.uint8), (512, 512), interpolation=cv2.INTER_NEAREST).astype(bool) for s in fig.samples[:3]]
    empty = [np.zeros((512, 512), bool)] * 3
    first_pid = fig.samples[0].patient_id
    good = figshare_agreement(kag, exact + [np.ones((512, 512), bool)], fig, never_trained={first_pid})
    assert good["n_matched"] == 3 and good["dice_mean"] > 0.98
    assert good["n_matched_never_trained"] == sum(s.patient_id == first_pid for s in fig.samples[:3])
    bad = figshare_agreement(kag, empty + [np.ones((512, 512), bool)], fig)
    assert bad["n_matched"] == 3 and bad["dice_mean"] == 0.0
