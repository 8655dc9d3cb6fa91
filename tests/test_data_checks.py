"""Dataset check: leakage between splits, confounders, corrupt files, patients; the `data check` command."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from tumorlens.data.checks import DEFAULT_HAMMING, check_dataset, hamming_pairs, nearest_distance, phash64
from tumorlens.data.commands import register
from tumorlens.data.sources import open_dataset
from tumorlens.data.synthetic import make_phantoms

from test_data_medical import write_dicom  # noqa: E402  (fixture writer shared with the reader tests)


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img / max(img.max(), 1e-6) * 255, 0, 255).astype(np.uint8)


def _leaky_dataset(root: Path) -> tuple[Path, set[str]]:
    """Training/Testing phantoms; some Testing files are copies or re-encodings of Training files."""
    train = make_phantoms(24, size=96, seed=1, slices_per_patient=1)
    test = make_phantoms(16, size=96, seed=2, slices_per_patient=1)
    for i, s in enumerate(train.samples):
        d = root / "Training" / s.label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_u8(s.image)).save(d / f"tr_{i}.png")
    planted = set()
    for i, s in enumerate(test.samples):
        d = root / "Testing" / s.label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_u8(s.image)).save(d / f"te_{i}.png")
    # Leaks: an exact copy, a JPEG re-encoding, a slightly brighter copy, a resampled copy.
    for j, how in enumerate(["copy", "jpeg", "brighter", "resampled"]):
        src = root / "Training" / train.samples[j].label / f"tr_{j}.png"
        dst = root / "Testing" / train.samples[j].label / f"leak_{how}.png"
        img = Image.open(src)
        if how == "copy":
            shutil.copy(src, dst)
            planted.add(str(dst))
            continue
        if how == "jpeg":
            dst = dst.with_suffix(".jpg")
            img.convert("RGB").save(dst, quality=75)
        elif how == "brighter":
            Image.fromarray(np.clip(np.asarray(img) * 1.1 + 4, 0, 255).astype(np.uint8)).save(dst)
        else:
            img.resize((128, 128), Image.BICUBIC).resize((96, 96), Image.BOX).save(dst)
        planted.add(str(dst))
    return root, planted


def test_finds_the_testing_images_copied_from_training(tmp_path):
    root, planted = _leaky_dataset(tmp_path / "leaky")
    report = check_dataset(open_dataset(root, progress=False), progress=False)
    assert report.near_twins_testing == planted
    assert report.cross_split["Testing->Training"]["images_with_twin"] == 4
    assert report.findings[0].startswith("leakage: 4 of 20 Testing images (20.0%)")
    assert 1 / 20 <= report.twin_share_by_threshold[0] < 4 / 20  # the byte copy is exact, the resampled one not
    assert {p.key_a for p in report.testing_pairs} == planted
    d = json.loads(json.dumps(report.to_dict()))  # serialisable
    assert sorted(d["near_twins_testing"]) == sorted(planted) and d["hamming_threshold"] == DEFAULT_HAMMING


def test_reports_confounders_corrupt_and_blank_files(tmp_path):
    root = tmp_path / "confounded"
    ds = make_phantoms(60, size=64, seed=3)
    for i, s in enumerate(ds.samples):
        d = root / s.label
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(_u8(s.image) // (2 if s.label == "glioma" else 1))  # glioma: darker files
        (img.convert("RGB") if s.label == "notumor" else img).save(d / f"{i}.png")  # notumor: stored as RGB
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "glioma" / "blank.png")
    (root / "glioma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = check_dataset(open_dataset(root, progress=False), progress=False)
    text = "\n".join(report.findings)
    assert "confounder: glioma differs from the other classes in brightness" in text
    assert "share of files stored as RGB differs by class" in text and "notumor 100%" in text
    assert "meningioma differs" not in text
    assert report.channels["notumor"] == {"3": 15} and report.channels["glioma"] == {"1": 16}
    assert [Path(s["path"]).name for s in report.skipped] == ["broken.png"]
    assert [Path(b).name for b in report.blank] == ["blank.png"]
    assert report.near_twins_testing == set() and report.counts["(all)"]["glioma"] == 16


def test_patient_duplicates_and_simulated_slice_split_warns():
    ds = make_phantoms(120, size=64, seed=0, slices_per_patient=6)
    report = check_dataset(ds, progress=False, simulate_split="slice", hamming=8)
    assert report.patients["n_patients"] == 20
    assert report.simulated_split["patients_on_both_sides"] > 0
    assert any(f.startswith("warning: a slice-level split") for f in report.findings)
    by_patient = check_dataset(ds, progress=False, simulate_split="patient", hamming=8)
    assert by_patient.simulated_split["patients_on_both_sides"] == 0
    assert not any(f.startswith("warning") for f in by_patient.findings)


def test_hamming_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, 300, dtype=np.uint64)
    a[10] = a[20] ^ np.uint64(0b101)  # distance 2
    a[30] = a[40]
    b = rng.integers(0, 2**63, 50, dtype=np.uint64)
    b[7] = a[3] ^ np.uint64(1 << 40)
    ii, jj, dd = hamming_pairs(a, None, 2, block=64)
    assert sorted(zip(ii.tolist(), jj.tolist(), dd.tolist())) == [(10, 20, 2), (30, 40, 0)]
    ii, jj, dd = hamming_pairs(a, b, 1, block=64)
    assert list(zip(ii, jj, dd)) == [(3, 7, 1)]
    brute = np.array([min(bin(int(x) ^ int(y)).count("1") for y in b) for x in a[:40]])
    np.testing.assert_array_equal(nearest_distance(a[:40], b, block=16), brute)
    assert phash64(np.ones((8, 8))) is None


# -- the command ------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


def test_check_command_writes_json_and_near_twin_csv(tmp_path):
    root, planted = _leaky_dataset(tmp_path / "leaky")
    out = tmp_path / "out"
    res = CliRunner().invoke(_cli(), ["data", "check", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "have a near twin in Training" in res.output and "Slices per class and split" in res.output
    report = json.loads((out / "check.json").read_text())
    assert report["cross_split"]["Testing->Training"]["images_with_twin"] == 4
    rows = list(csv.DictReader(io.StringIO((out / "near_twins.csv").read_text())))
    assert {r["test_path"] for r in rows} == planted and all(r["train_path"].startswith(str(root / "Training")) for r in rows)
    res = CliRunner().invoke(_cli(), ["data", "check", str(root), "--json", "--hamming", "0"])
    assert res.exit_code == 0
    exact = set(json.loads(res.stdout[res.stdout.index("{"):])["near_twins_testing"])
    assert any("leak_copy" in p for p in exact) and exact < planted


def test_check_command_on_dicom_folder_and_nifti_volume(tmp_path):
    raw = (np.arange(32 * 32).reshape(32, 32) % 50 * 20).astype(np.uint16)
    for i in range(3):
        write_dicom(tmp_path / "dicom" / f"{i}.dcm", np.roll(raw, 7 * i, axis=1), patient=f"P{i % 2}")
    write_dicom(tmp_path / "dicom" / "empty.dcm", raw, with_pixels=False)
    res = CliRunner().invoke(_cli(), ["data", "check", str(tmp_path / "dicom"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{"):])
    assert d["n_samples"] == 3 and d["kind"] == "dicom" and d["skipped"][0]["reason"] == "DICOM without pixel data"
    assert d["patients"]["n_patients"] == 2

    vol = np.zeros((24, 24, 6), np.float32)
    vol[4:20, 4:20, 1:5] = np.random.default_rng(0).random((16, 16, 4)) * 100
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    res = CliRunner().invoke(_cli(), ["data", "check", str(tmp_path / "vol.nii.gz"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{"):])
    assert d["n_samples"] == 6 and len(d["blank_images"]) == 2  # the empty first and last slices
    assert d["blank_images"][0].endswith("vol.nii.gz#0")


def test_check_command_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(_cli(), ["data", "check", str(tmp_path / "empty")])
    assert res.exit_code == 2
    assert "error:" in res.output and str(tmp_path / "empty") in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(_cli(), ["data", "check", str(tmp_path / "empty"), "--hamming", "99"])
    assert res.exit_code == 2


@pytest.mark.shared_data
def test_reads_the_kaggle_set_and_finds_the_leakage_its_readme_describes(kaggle_root):
    ds = open_dataset(kaggle_root, progress=False)
    assert ds.kind == "split_class_folders" and len(ds) == 7019 and not ds.skipped
    assert len(ds.by_split("Testing")) == 1311
    report = check_dataset(ds, progress=False)
    share = len(report.near_twins_testing) / 1311
    assert 0.3 < report.twin_share_by_threshold[0] < 0.37  # "about a third" match exactly
    assert share >= report.twin_share_by_threshold[0]
    assert any(f.startswith("confounder: share of files stored as RGB") for f in report.findings)
