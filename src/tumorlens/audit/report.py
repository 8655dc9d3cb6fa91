"""report.html: one self-contained page (figures embedded as base64 PNG) read top to bottom:
verdict, accuracy and calibration, where the model looks, shortcut test, counterfactuals,
galleries, explainers. It only renders what the checks computed (summary + their figures)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape

from tumorlens.audit.checks.base import Figure


def _missing(x) -> bool:
    return x is None or isinstance(x, Undefined) or (isinstance(x, float) and not np.isfinite(x))


def _b64(path: Path) -> str:
    mime = "image/jpeg" if str(path).endswith(".jpg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_report(summary: dict, figures: Sequence[Figure], out: Path) -> Path:
    """Render report.html from the summary and the checks' figures (galleries in list order)."""
    out = Path(out)
    figs = {f.key: _b64(f.path) for f in figures if not f.is_gallery}
    galleries = [(f.title, f.note, _b64(f.path)) for f in figures if f.is_gallery]
    env = Environment(loader=PackageLoader("tumorlens.audit", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["pct"] = lambda x, d=1: "n/a" if _missing(x) else f"{x:.{d}%}"
    env.filters["num"] = lambda x, d=2: "n/a" if _missing(x) else f"{x:.{d}f}"
    from tumorlens.explain.methods import BASELINE_METHODS

    page = env.get_template("report.html.j2").render(s=summary, figs=figs, galleries=galleries,
                                                     checks=_checks_view(summary.get("data_checks")),
                                                     baselines=BASELINE_METHODS)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _checks_view(d: dict | None) -> dict | None:
    """What the report shows of the dataset check: its findings and the counts per split and class."""
    if not d:
        return None
    return {
        "findings": d.get("findings", []),
        "counts": d.get("counts", {}),
        "n_pairs": d.get("n_duplicate_pairs"),
        "n_twins": d.get("n_near_twins_testing"),
        "hamming": d.get("hamming_threshold"),
        "twin_share_by_threshold": d.get("twin_share_by_threshold", {}),
    }
