"""`tumorlens audit` end to end on a small Training/Testing folder with planted leakage, and the
one-line errors a user gets for bad input."""

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tumorlens.cli import app
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.synthetic import make_phantoms
from tumorlens.models.checkpoint import save_checkpoint
from tumorlens.models.registry import build_model

runner = CliRunner()
N_TWINS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Training/ and Testing/ class folders of phantom PNGs; N_TWINS Testing files copy Training ones."""
    root = tmp_path_factory.mktemp("phantom_data")
    train = make_phantoms(24, size=64, seed=1)
    test = make_phantoms(12, size=64, seed=2)

    def write(sample, split, name):
        d = root / split / sample.label
        d.mkdir(parents=True, exist_ok=True)
        img = (np.clip(sample.image / max(sample.image.max(), 1e-6), 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(d / name), img)

    for i, s in enumerate(train.samples):
        write(s, "Training", f"tr_{i:03d}.png")
    for i, s in enumerate(test.samples):
        write(s, "Testing", f"te_{i:03d}.png")
    for i, s in enumerate(train.samples[:N_TWINS]):  # leaked: the same slice in both splits
        write(s, "Testing", f"leak_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model("simple_cnn", 4)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(path, net, "simple_cnn", ["glioma", "meningioma", "notumor", "pituitary"],
                           PreprocessRecipe(size=48))


def test_audit_command_writes_report_and_finds_the_leak(dataset, checkpoint, tmp_path):
    out = tmp_path / "audit"
    res = runner.invoke(app, ["audit", "--model", str(checkpoint), "--data", str(dataset), "--out", str(out),
                              "--methods", "gradcam,random", "--compare-n", "4", "--sanity-n", "2"])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and "leakage" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["audited_split"] == "Testing" and s["n_images"] == 12 + N_TWINS
    assert s["classification"]["near_twins_in_training"] == N_TWINS
    assert s["classification"]["leakage_free"]["n"] == 12
    assert "does not name its training data" in s["leakage"]["model_training_data"]["note"]  # no provenance
    assert [r["method"] for r in s["explainers"]] == ["localise", "gradcam", "random"]  # the per-image map first
    for r in s["explainers"]:  # ROAD on the comparison's 4 images (the default --road-n 4)
        assert r["road_n"] == 4 and r["road_percentiles"] == [50, 70, 90]
        assert r["road_combined"] == pytest.approx((r["road_lerf"] - r["road_morf"]) / 2)
    assert (out / "gradcam_analysis.csv").read_text().count("\n") == 12 + N_TWINS + 1
    html = (out / "report.html").read_text()
    assert "leakage-free" in html and "Dataset checks" in html and "ROAD MoRF / LeRF" in html


def test_road_can_be_switched_off(dataset, checkpoint, tmp_path):
    out = tmp_path / "audit"
    res = runner.invoke(app, ["audit", "--model", str(checkpoint), "--data", str(dataset), "--out", str(out),
                              "--methods", "gradcam", "--compare-n", "2", "--sanity-n", "1", "--road-n", "0",
                              "--robustness-n", "0", "--no-data-checks"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert all("road_morf" not in r for r in s["explainers"])
    assert "ROAD MoRF" not in (out / "report.html").read_text()


@pytest.mark.parametrize("args,expected", [
    (["--model", "/nonexistent/model.pt", "--data", "DATA"], "model file not found: /nonexistent/model.pt"),
    (["--model", "CKPT", "--data", "/nonexistent/data"], "/nonexistent/data"),
    (["--model", "CKPT"], "give --model CKPT and --data DATASET, or --demo"),
    (["--model", "CKPT", "--data", "DATA", "--methods", "gradcam,telepathy"], "unknown explainer"),
    (["--model", "CKPT", "--data", "DATA", "--limit", "0"], "--limit must be at least 1"),
    (["--model", "CKPT", "--data", "DATA", "--road-n", "-1"], "--road-n must be 0 (off) or more"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, dataset, checkpoint, tmp_path):
    args = [a.replace("DATA", str(dataset)).replace("CKPT", str(checkpoint)) for a in args]
    res = runner.invoke(app, ["audit", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert expected in res.output
    assert "Traceback" not in res.output


def test_labels_the_model_does_not_know_are_named(tmp_path, checkpoint):
    d = tmp_path / "odd" / "tumour_x"
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "a.png"), (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8))
    res = runner.invoke(app, ["audit", "--model", str(checkpoint), "--data", str(tmp_path / "odd"), "--out",
                              str(tmp_path / "o")])
    assert res.exit_code == 2 and "tumour_x" in res.output and "--class-map" in res.output


def test_images_the_model_was_trained_on_are_found_through_its_provenance(dataset, tmp_path):
    """A second dataset holding copies of the model's training slices (as figshare does for a
    Kaggle-trained model): the audit finds them through the checkpoint's provenance."""
    import shutil

    from tumorlens.evaluation.leakage import model_training_twins
    from tumorlens.data.sources import open_dataset
    from tumorlens.models.checkpoint import TumorModel

    other = tmp_path / "other" / "glioma"
    other.mkdir(parents=True)
    for f in sorted((dataset / "Training" / "glioma").glob("*.png"))[:3]:
        shutil.copy(f, other / f"copy_{f.name}")
    for f in sorted((dataset / "Testing" / "glioma").glob("te_*.png"))[:2]:
        shutil.copy(f, other / f.name)
    audited = open_dataset(tmp_path / "other", progress=False)
    model = TumorModel(net=None, arch="simple_cnn", classes=["glioma"], recipe=PreprocessRecipe(size=48),
                       provenance={"data": str(dataset), "train_split": "Training"})
    twins, info = model_training_twins(model, audited, audited, "auto", progress=False)
    names = sorted(s.path.split("/")[-1] for s, t in zip(audited.samples, twins) if t)
    assert len(names) == 3 and all(n.startswith("copy_") for n in names)
    assert info["checked"] and info["split"] == "Training" and "3 of 5" in info["note"]
    none, info = model_training_twins(model, audited, audited, "none", progress=False)
    assert none is None and "not checked" in info["note"]
    model.provenance = {}
    none, info = model_training_twins(model, audited, audited, "auto", progress=False)
    assert none is None and "--training-data" in info["note"]


def test_hashes_stored_in_the_checkpoint_need_no_training_folder(dataset):
    from tumorlens.evaluation.leakage import model_training_twins
    from tumorlens.data.checks import hash_samples
    from tumorlens.data.sources import open_dataset
    from tumorlens.models.checkpoint import TumorModel

    testing = open_dataset(dataset, progress=False).by_split("Testing")
    training = open_dataset(dataset, progress=False).by_split("Training")
    h, v = hash_samples(training.samples, progress=False)
    model = TumorModel(net=None, arch="simple_cnn", classes=["glioma"], recipe=PreprocessRecipe(size=48),
                       provenance={"data": "/elsewhere/not/here", "train_phash": [f"{x:016x}" for x in h[v]]})
    twins, info = model_training_twins(model, testing, testing, "stored", progress=False)
    names = [s.path.split("/")[-1] for s, t in zip(testing.samples, twins) if t]
    assert len(names) == N_TWINS and all(n.startswith("leak_") for n in names)
    assert info["source"] == "hashes stored in the checkpoint"
    model.provenance = {"data": "/elsewhere/not/here"}
    assert model_training_twins(model, testing, testing, "stored", progress=False)[0] is None
    assert "not on this machine" in model_training_twins(model, testing, testing, "auto", progress=False)[1]["note"]


def test_a_file_damaged_beyond_its_header_is_skipped_and_counted(dataset, checkpoint, tmp_path):
    """The header and end marker of one Testing PNG stay valid, its pixel data does not: the audit
    skips it, reports it in summary.json, and audits the rest."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    victim = sorted((root / "Testing").rglob("te_*.png"))[0]
    data = bytearray(victim.read_bytes())
    at = data.index(b"IDAT") + 20
    data[at : at + 8] = b"\xff" * 8
    victim.write_bytes(bytes(data))
    out = tmp_path / "audit"
    res = runner.invoke(app, ["audit", "--model", str(checkpoint), "--data", str(root), "--out", str(out),
                              "--methods", "gradcam", "--compare-n", "4", "--sanity-n", "2", "--no-data-checks"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 12 + N_TWINS - 1 and s["data"]["skipped_files"] == 1
    assert victim.name not in (out / "gradcam_analysis.csv").read_text()
