"""comparison.html: the comparison of two audits as one self-contained page (figure embedded)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape


def _fmt(value, pct: bool, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if pct:
        return f"{value * 100:{sign}.1f} pts" if signed else f"{value:.1%}"
    return f"{value:{sign}.3f}"


def shift_figure_png(comp: dict) -> str | None:
    """Grouped bars: accuracy under each shift, A and B (base64 PNG), or None without shifts."""
    rows = [f for f in comp["figures"] if f["key"].startswith("shift/")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [f["key"].split("/", 1)[1] for f in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 3.6))
    for off, side, colour in ((-0.2, "a", "#90a4ae"), (0.2, "b", "#1e88e5")):
        vals = [np.nan if f[side] is None else f[side] for f in rows]
        ax.bar(x + off, vals, 0.4, label=f"{side.upper()}: {comp[side]['model']}", color=colour)
    for side, style in (("a", ":"), ("b", "--")):
        clean = next((f[side] for f in comp["figures"] if f["key"] == "accuracy"), None)
        if clean is not None:
            ax.axhline(clean, ls=style, color="k", lw=1, label=f"{side.upper()} clean accuracy")
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy")
    lows = [f[s] for f in rows for s in ("a", "b") if f[s] is not None]
    ax.set_ylim(max(0.0, min(lows) - 0.05) if lows else 0.0, 1.0)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Accuracy under each acquisition shift")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_comparison_html(comp: dict, sa: dict, sb: dict, path: Path) -> Path:
    env = Environment(loader=PackageLoader("tumorlens.audit", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    groups: dict[str, list[dict]] = {}
    for f in comp["figures"]:
        groups.setdefault(f["group"], []).append(f)
    thresholds = {side: s.get("verdict", {}).get("thresholds", {}) for side, s in (("a", sa), ("b", sb))}
    page = env.get_template("comparison.html.j2").render(c=comp, groups=groups, shift_fig=shift_figure_png(comp),
                                                         thresholds=thresholds)
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
