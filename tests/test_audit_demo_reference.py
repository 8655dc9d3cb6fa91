"""The demo audit's numbers and summary.json's keys stay what they were before the audit became a
list of checks (issue 14): same bundled model, same bundled slices, same seed.

tests/fixtures/demo_audit_reference.json was written from `tumorlens audit --demo --seed 0` on the
code before the refactor (main at 0ebbd05), by `reference_view` below, and rewritten when the audit's
per-image map became the localisation map (HiResCAM at stride 16, issue 16) and ROAD joined the
explainer table, extended (not rewritten) when the counterfactual check gained the mirror removal (issue 18),
and its numbers rewritten when a new default model was shipped (issue 18; `python
tests/test_audit_demo_reference.py` rewrites them and only extends the key list); it holds every number of
summary.json except timings and paths, the verdict, and the columns of gradcam_analysis.csv with
their means. summary.json's keys are what users script against: the key test fails when a key
disappears (new keys may be added: update the fixture's key list with the new ones)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "demo_audit_reference.json"
VOLATILE = ("timing_seconds", "tumorlens_version")  # machine- and release-dependent
VOLATILE_PREFIXES = ("data_checks.seconds", "robustness.cost.")  # stage timings
VOLATILE_LEAVES = ("ms_per_image", "ms_per_image_all_images", "root", "path", "example_paths", "progress")
# the "random" explainer is the baseline with unseeded random channel weights (seed None): its
# numbers differ between two runs of the same code, so they are not compared
UNSEEDED_METHOD = "random"


def _flatten(o, prefix=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, o


def reference_view(summary: dict, csv: pd.DataFrame) -> dict:
    """What the refactor must not change: every leaf of summary.json but timings and paths; the
    CSV's columns and the mean of each numeric column."""
    kept = {k: v for k, v in summary.items() if k not in VOLATILE}
    kept["explainers"] = [r for r in kept.get("explainers", []) if r.get("method") != UNSEEDED_METHOD]
    for section in ("sanity", "faithfulness_curves"):
        kept[section] = {m: v for m, v in (kept.get(section) or {}).items() if m != UNSEEDED_METHOD}
    leaves = {k: v for k, v in _flatten(kept)
              if _leaf_name(k) not in VOLATILE_LEAVES and not k.startswith(VOLATILE_PREFIXES)}
    numeric = csv.select_dtypes("number")
    keys = sorted(k for k, _ in _flatten_keys(summary) if not k.startswith("data_checks.seconds."))
    return {"summary": leaves, "keys": keys,
            "csv_columns": list(csv.columns),
            "csv_means": {c: (None if math.isnan(v) else float(v)) for c, v in numeric.mean().items()},
            "csv_rows": len(csv)}


def _leaf_name(key: str) -> str:
    """'a.b[2].c[0]' -> 'c': a leaf's own name without list indices (absolute paths are checkout-dependent)."""
    return key.rsplit(".", 1)[-1].split("[", 1)[0]


def _flatten_keys(o, prefix=""):
    """Dict keys as dotted paths (list items' dicts under '[]'), down to the leaves' parents; the
    keys of dicts keyed by data (class names, methods, focus labels) are included too: they are
    fixed by the demo's data. The dataset check's stage timings (data_checks.seconds) are left out:
    their stages are the dataset check's to rename."""
    if isinstance(o, dict):
        for k, v in o.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            yield p, v
            yield from _flatten_keys(v, p)
    elif isinstance(o, list):
        for v in o:
            yield from _flatten_keys(v, f"{prefix}[]")


def run_demo_audit(out: Path) -> tuple[dict, pd.DataFrame]:
    """`tumorlens audit --demo --seed 0` into `out`: its summary.json and per-image CSV."""
    from typer.testing import CliRunner

    from tumorlens.cli import app

    res = CliRunner().invoke(app, ["audit", "--demo", "--seed", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads((out / "summary.json").read_text()), pd.read_csv(out / "gradcam_analysis.csv")


@pytest.fixture(scope="module")
def demo_audit(tmp_path_factory):
    return run_demo_audit(tmp_path_factory.mktemp("demo_audit"))


def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)


def test_summary_json_keeps_its_keys(demo_audit):
    summary, csv = demo_audit
    ref = json.loads(FIXTURE.read_text())
    now = reference_view(summary, csv)
    missing = sorted(set(ref["keys"]) - set(now["keys"]))
    assert not missing, f"summary.json lost keys users may script against: {missing[:20]}"
    assert now["csv_columns"] == ref["csv_columns"]


def test_demo_audit_numbers_are_unchanged(demo_audit):
    summary, csv = demo_audit
    ref = json.loads(FIXTURE.read_text())
    now = reference_view(summary, csv)
    differ = [(k, v, now["summary"].get(k, "<missing>")) for k, v in ref["summary"].items()
              if not _close(v, now["summary"].get(k, "<missing>"))]
    assert not differ, f"{len(differ)} summary values changed, e.g. {differ[:5]}"
    assert now["csv_rows"] == ref["csv_rows"]
    differ = [(c, v, now["csv_means"].get(c)) for c, v in ref["csv_means"].items()
              if not (v is None and now["csv_means"].get(c) is None) and not _close(v, now["csv_means"].get(c))]
    assert not differ, f"per-image columns changed: {differ[:5]}"


if __name__ == "__main__":
    # Rewrite the fixture's numbers on purpose (a new default model was shipped): the demo audit's
    # numbers and per-image means are replaced; the key list only grows, so a lost key still fails.
    import sys
    import tempfile

    now = reference_view(*run_demo_audit(Path(tempfile.mkdtemp())))
    old = json.loads(FIXTURE.read_text())
    if now["csv_columns"] != old["csv_columns"]:
        sys.exit(f"gradcam_analysis.csv's columns changed: {old['csv_columns']} -> {now['csv_columns']}")
    now["keys"] = old["keys"] + sorted(set(now["keys"]) - set(old["keys"]))
    FIXTURE.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
