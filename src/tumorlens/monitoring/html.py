"""monitoring.html: the monitoring report as one self-contained page, its plots over time embedded
(matplotlib, as the audit report's figures)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from tumorlens.monitoring.features import LABELS


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def timeline_png(report: dict) -> str | None:
    """Per window (x: its last request's time): estimated accuracy and its alert line; the strongest
    feature drift as -log10 of the adjusted p-value against the alert line; predicted-class shares;
    the share flagged by the input check. None without windows."""
    windows = report["windows"]
    if not windows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(windows))
    labels = [w["end"][:16].replace("T", " ") for w in windows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(x, [w["expected_accuracy"] for w in windows], "o-", color="#1e88e5", label="estimated (CBPE)")
    acc = [w["accuracy"] for w in windows]
    if any(a is not None for a in acc):
        ax.plot(x, [np.nan if a is None else a["threshold"] for a in acc], "--", color="#e53935", label="alert below")
        ax.axhline(acc[-1]["reference_estimate"] if acc[-1] else np.nan, color="k", lw=0.8, ls=":", label="reference")
    ax.set_title("Estimated accuracy (no labels)")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    alpha = report["thresholds"]["alpha"]
    names = sorted({f["feature"] for w in windows for f in w["features"]})
    for name in names:
        y = [next((-np.log10(max(f["p_adjusted"], 1e-300)) for f in w["features"] if f["feature"] == name), np.nan)
             for w in windows]
        ax.plot(x, y, ".-", lw=1, label=LABELS.get(name, name))
    ax.axhline(-np.log10(alpha), color="#e53935", ls="--", label=f"alert (adjusted p < {alpha:g})")
    ax.set_yscale("symlog", linthresh=2)
    ax.set_ylim(bottom=0)
    ax.set_title("Input and output drift: -log10 adjusted p (KS)")
    if names:
        ax.legend(fontsize=6, ncol=2)

    ax = axes[1, 0]
    classes = list(windows[-1]["classes"]["counts"])
    bottom = np.zeros(len(windows))
    for c in classes:
        share = np.array([w["classes"]["counts"].get(c, 0) / max(w["answered"], 1) for w in windows])
        ax.bar(x, share, bottom=bottom, label=c)
        bottom += share
    ax.set_title("Predicted classes (a gap: answers withheld by the input check)")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    ax.plot(x, [w["flagged_share"] for w in windows], "o-", color="#6d4c41")
    ax.set_title("Share flagged by the input check")
    for a in axes[1]:
        a.set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def write_monitoring_report(report: dict, out: Path) -> tuple[Path, Path]:
    """monitoring.json and monitoring.html in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=PackageLoader("tumorlens.monitoring", "templates"), autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("monitoring.html.j2").render(r=report, timeline=timeline_png(report))
    html, js = out / "monitoring.html", out / "monitoring.json"
    html.write_text(page, encoding="utf-8")
    js.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return html, js
