"""examples/audit_your_model.ipynb runs from top to bottom (nbclient, a real kernel) on the bundled slices:
the notebook a new user opens first must not be broken."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "examples" / "audit_your_model.ipynb"


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TUMORLENS_WORK", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum("AuditReport" in h or "full report" in h for h in html) >= 2  # both verdicts rendered
    assert (tmp_path / "runs" / "resnet18_audit" / "report.html").is_file()
    assert (tmp_path / "runs" / "keras_audit" / "summary.json").is_file()
