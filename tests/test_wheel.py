"""The built wheel is a working tumorlens without this checkout (issue 26, "installable"): it holds the
bundled model, segmenter, sample slices, report templates and web page, and from it alone a foreign model
loads and the demo's assets are found."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
ASSETS = ("tumorlens/assets/default_model.pt", "tumorlens/assets/segmenter.pt", "tumorlens/assets/MODEL_CARD.md",
          "tumorlens/audit/templates/report.html.j2", "tumorlens/serve/static/index.html",
          "tumorlens/monitoring/templates/monitoring.html.j2")


def test_the_wheel_holds_the_assets_and_works_alone(tmp_path):
    # built from a copy: setuptools leaves build/ and egg-info beside the sources it builds
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("tumorlens-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(ASSETS) <= names
    assert sum(n.startswith("tumorlens/assets/samples/kaggle/") for n in names) >= 8
    assert "tumorlens/api.py" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    probe = ("import tumorlens, numpy as np; from tumorlens.assets import default_model_path, sample_dir; "
             "m = tumorlens.load_model(default_model_path()); "
             "f = tumorlens.load_model(lambda x: np.full((len(x), 4), 0.25), classes='a,b,c,d', input_size=32, channels=1); "
             "print(tumorlens.__file__, len(list(sample_dir('kaggle').rglob('*.jpg'))), m.classes, f.num_classes)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    path, n_kaggle, *rest = out.stdout.split(" ", 2)
    assert path.startswith(str(tmp_path / "site"))  # the wheel's copy, not this checkout
    assert int(n_kaggle) >= 8 and "glioma" in rest[0]
