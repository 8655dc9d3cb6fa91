"""scripts/figshare_split.py: the dev and held-out sides of figshare never share a patient, and
every slice lands on exactly one side (issue 18: nothing bundled may be selected on the held-out 45)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "figshare_split.py"


@pytest.fixture(scope="module")
def figshare_split():
    spec = importlib.util.spec_from_file_location("figshare_split", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_dev_and_heldout_split_the_slices_by_patient(tmp_path, figshare_split):
    data = tmp_path / "figshare"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    slices = [(i, ["glioma", "meningioma", "pituitary"][i % 3], f"p{i % 7}") for i in range(1, 22)]
    with (data / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "class_name", "pid", "original_size"])
        writer.writerows([i, 1, name, pid, "512x512"] for i, name, pid in slices)
    heldout = tmp_path / "heldout.csv"
    heldout.write_text("pid,class_name\np1,glioma\np4,meningioma\n")

    for side in ("dev", "heldout"):
        figshare_split.main([side, str(tmp_path / side), "--data", str(data), "--heldout", str(heldout)])
    dev, held = _rows(tmp_path / "dev" / "metadata.csv"), _rows(tmp_path / "heldout" / "metadata.csv")

    assert {r["pid"] for r in held} == {"p1", "p4"}
    assert not {r["pid"] for r in dev} & {"p1", "p4"}
    assert sorted(int(r["index"]) for r in dev + held) == list(range(1, 22))
    # the images are linked, not copied
    assert (tmp_path / "dev" / "images").is_symlink() and (tmp_path / "dev" / "images").resolve() == (data / "images")
