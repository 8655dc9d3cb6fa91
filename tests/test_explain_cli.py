"""`tumorlens explain` on one image, on a folder, and with --method all."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tumorlens.cli import app
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.models.checkpoint import save_checkpoint
from tumorlens.models.registry import build_model

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, build_model("simple_cnn", 4), "simple_cnn", CLASSES, PreprocessRecipe(size=32))
    return path


def _write_image(path, seed, size=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 2.5) ** 2) * 120.0 + rng.normal(0, 20, (size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for k, cls in enumerate(["glioma", "notumor"]):
        for j in range(3):
            _write_image(root / cls / f"img{j}.png", seed=10 * k + j)
    return root


def _run(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


def test_single_image_writes_an_overlay_and_a_prediction(checkpoint, folder, tmp_path):
    image = folder / "glioma" / "img0.png"
    r = _run("--image", image, "--model", checkpoint, "--method", "gradcam", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    png = tmp_path / "img0_gradcam.png"
    with Image.open(png) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 1
    row = rows[0]
    assert row["predicted"] in CLASSES and row["explained_class"] == row["predicted"]
    probs = [float(row[f"p_{c}"]) for c in CLASSES]
    assert abs(sum(probs) - 1) < 1e-3 and row["output"] == png.name


def test_folder_gives_one_overlay_per_image_and_a_csv(checkpoint, folder, tmp_path):
    r = _run("--image", folder, "--model", checkpoint, "--method", "ig", "--param", "steps=4",
             "--target", "meningioma", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == sorted(f"{c}__img{j}_ig.png" for c in ("glioma", "notumor") for j in range(3))
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 6
    assert {r["label"] for r in rows} == {"glioma", "notumor"}
    assert all(r["explained_class"] == "meningioma" for r in rows)


def test_method_all_writes_a_comparison_figure(checkpoint, folder, tmp_path):
    image = folder / "notumor" / "img1.png"
    r = _run("--image", image, "--model", checkpoint, "--method", "all", "--out", tmp_path,
             "--param", "samples=24", "--param", "steps=4", "--param", "n_segments=10")
    assert r.exit_code == 0, r.output
    fig = tmp_path / "img1_methods.png"
    with Image.open(fig) as im:
        w, h = im.size
    assert w >= 5 * 200 and h >= 2 * 200  # 14 panels: the image and 13 methods on a 5-wide grid
    assert "comparison figures" in r.output


def test_layer_override_and_mask_outline(checkpoint, folder, tmp_path):
    image = folder / "glioma" / "img1.png"
    mask = tmp_path / "mask.png"
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 10:20] = 255
    Image.fromarray(m).save(mask)
    r = _run("--image", image, "--model", checkpoint, "--layer", "features.1", "--mask", mask, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    rgb = np.asarray(Image.open(tmp_path / "o" / "img1_gradcam.png"))
    green = (rgb[..., 1] == 255) & (rgb[..., 0] == 0) & (rgb[..., 2] == 0)
    assert green.any()


@pytest.mark.parametrize("args, message", [
    (["--method", "gradcamz"], "unknown explain method 'gradcamz'"),
    (["--layer", "features.9"], "unknown layer 'features.9'"),
    (["--target", "tumour"], "unknown target class 'tumour'"),
    (["--param", "steps"], "expected KEY=VALUE"),
    (["--method", "ig", "--param", "window=3"], "unknown parameter(s) ['window'] for ig"),
])
def test_known_errors_are_one_line_with_exit_code_2(checkpoint, folder, tmp_path, args, message):
    r = _run("--image", folder / "glioma" / "img0.png", "--model", checkpoint, "--out", tmp_path, *args)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_missing_inputs_exit_2(checkpoint, tmp_path):
    r = _run("--image", tmp_path / "nope.png", "--model", checkpoint, "--out", tmp_path)
    assert r.exit_code == 2 and "nope.png" in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _run("--image", tmp_path, "--model", bad, "--out", tmp_path)
    assert r.exit_code == 2 and "bad.pt" in r.output
