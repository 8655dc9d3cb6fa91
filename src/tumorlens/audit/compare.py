"""Two finished audits side by side: what a retrained model fixed and what it broke.

compare_audits(a, b, out) reads a/summary.json and b/summary.json (A is the reference, e.g. the
model before retraining; B the new one) and writes out/comparison.json and out/comparison.html:
both verdicts' checks side by side, and the key figures with B - A and whether that is better or
worse. A section an audit lacks (older audits have no robustness, audits without tumor masks no
pointing game or Delta-Drop) shows as "n/a" and counts as neither better nor worse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumorlens.errors import TumorlensError

SUMMARY = "summary.json"
STATUS_RANK = {"pass": 0, "warn": 1, "fail": 2}
# Differences smaller than this (in the figure's own unit: shares, AUCs, Delta-Drop) are "same".
TOLERANCE = 0.005


class CompareError(TumorlensError):
    """An audit folder that cannot be compared; the message says why."""


@dataclass(frozen=True)
class Figure:
    key: str  # stable id in comparison.json
    label: str
    group: str
    path: tuple  # keys into summary.json
    higher_is_better: bool | None  # None: shown, not judged
    pct: bool = True  # a share, printed as a percentage


def _figures(classes: list[str], shifts: list[str]) -> list[Figure]:
    figs = [
        Figure("accuracy", "accuracy", "accuracy", ("classification", "all", "accuracy"), True),
        Figure("macro_f1", "macro-F1", "accuracy", ("classification", "all", "macro_f1"), True, pct=False),
        Figure("ece", "expected calibration error", "accuracy", ("classification", "all", "ece"), False, pct=False),
        Figure("leakage_free_accuracy", "leakage-free accuracy", "accuracy",
               ("classification", "leakage_free", "accuracy"), True),
        Figure("leakage_free_macro_f1", "leakage-free macro-F1", "accuracy",
               ("classification", "leakage_free", "macro_f1"), True, pct=False),
    ]
    figs += [Figure(f"recall/{c}", f"recall: {c}", "accuracy", ("classification", "all", "per_class", c, "recall"), True)
             for c in classes]
    figs += [
        # Lower is better: right answers with the brain blanked come from outside the brain.
        Figure("brain_blanked_accuracy", "accuracy with the brain blanked", "shortcut",
               ("shortcut", "accuracy", "brain_blanked"), False),
        Figure("brain_only_accuracy", "accuracy on the brain alone", "shortcut", ("shortcut", "accuracy", "brain_only"),
               True),
        Figure("attention_outside_brain", "correct predictions whose map peaks outside the brain", "attention",
               ("attention", "all", "share_correct_focused_outside_brain"), False),
        Figure("pointing_game", "pointing game (peak on the tumor)", "attention", ("attention", "all", "pointing_game"),
               True),
        Figure("delta_drop", "Delta-Drop, all correct tumor cases", "counterfactuals",
               ("counterfactuals", "all", "delta_drop_mean"), True, pct=False),
    ]
    figs += [Figure(f"delta_drop/{c}", f"Delta-Drop: {c}", "counterfactuals",
                    ("counterfactuals", "by_class", c, "delta_drop_mean"), True, pct=False) for c in classes]
    figs += [Figure("robustness_worst_drop", "largest accuracy drop under a shift", "robustness",
                    ("robustness", "worst_drop"), False)]
    figs += [Figure(f"shift/{s}", f"accuracy under {s}", "robustness", ("robustness", "_shift", s, "accuracy"), True)
             for s in shifts]
    figs += [Figure(f"shift_lf/{s}", f"leakage-free accuracy under {s}", "robustness",
                    ("robustness", "_shift", s, "leakage_free", "accuracy"), True) for s in shifts]
    return figs


def load_summary(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / SUMMARY if folder.is_dir() else folder
    if not path.is_file():
        raise CompareError(f"no audit at {folder}: {SUMMARY} not found (run `tumorlens audit` first)")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path} is not a readable audit summary: {exc}") from None
    if not isinstance(summary, dict) or "verdict" not in summary or "classification" not in summary:
        raise CompareError(f"{path} is not a tumorlens audit summary (no verdict or classification)")
    return summary


def _get(summary: dict, path: tuple) -> float | None:
    if path[:2] == ("robustness", "_shift"):
        shifts = {s.get("name"): s for s in (summary.get("robustness") or {}).get("shifts", []) if isinstance(s, dict)}
        node: Any = shifts.get(path[2])
        rest = path[3:]
    else:
        node, rest = summary, path
    for k in rest:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _judge(a: float | None, b: float | None, higher_is_better: bool | None) -> tuple[float | None, str]:
    if a is None or b is None:
        return None, "n/a"
    diff = b - a
    if higher_is_better is None:
        return diff, "shown"
    if abs(diff) < TOLERANCE:
        return diff, "same"
    return diff, "better" if (diff > 0) == higher_is_better else "worse"


def _checks(sa: dict, sb: dict) -> list[dict]:
    ca = {c["name"]: c for c in sa.get("verdict", {}).get("checks", [])}
    cb = {c["name"]: c for c in sb.get("verdict", {}).get("checks", [])}
    rows = []
    for name in list(ca) + [n for n in cb if n not in ca]:
        a, b = ca.get(name), cb.get(name)
        if a is None or b is None:
            change = "only in B" if a is None else "only in A"
        else:
            ra, rb = STATUS_RANK.get(a["status"]), STATUS_RANK.get(b["status"])
            change = ("same" if ra == rb else "n/a" if ra is None or rb is None
                      else "better" if rb < ra else "worse")
        rows.append({"name": name, "a": _check(a), "b": _check(b), "change": change})
    return rows


def _check(c: dict | None) -> dict | None:
    return None if c is None else {"status": c.get("status"), "detail": c.get("detail", "")}


def _side(folder: Path, s: dict) -> dict:
    m, d = s.get("model", {}), s.get("data", {})
    return {"audit": str(folder), "model": m.get("version"), "arch": m.get("arch"), "model_path": m.get("path"),
            "input_size": m.get("input_size"), "data": d.get("root"), "audited_split": d.get("audited_split"),
            "n_images": s.get("n_images"), "verdict": s.get("verdict", {}).get("status"),
            "has_robustness": bool((s.get("robustness") or {}).get("shifts"))}


def compare_summaries(sa: dict, sb: dict, a_dir: str | Path = "A", b_dir: str | Path = "B") -> dict:
    """The comparison as a dict (what comparison.json holds)."""
    classes = list(dict.fromkeys(sa.get("model", {}).get("classes", []) + sb.get("model", {}).get("classes", [])))
    shift_names = list(dict.fromkeys(
        x.get("name") for s in (sa, sb) for x in (s.get("robustness") or {}).get("shifts", []) if isinstance(x, dict)))
    figures = []
    for f in _figures(classes, shift_names):
        a, b = _get(sa, f.path), _get(sb, f.path)
        if a is None and b is None:
            continue
        diff, change = _judge(a, b, f.higher_is_better)
        figures.append({"key": f.key, "label": f.label, "group": f.group, "a": a, "b": b, "difference": diff,
                        "change": change, "higher_is_better": f.higher_is_better, "pct": f.pct})
    side_a, side_b = _side(Path(a_dir), sa), _side(Path(b_dir), sb)
    notes = []
    if (side_a["data"], side_a["audited_split"], side_a["n_images"]) != (side_b["data"], side_b["audited_split"],
                                                                         side_b["n_images"]):
        notes.append(f"the audits ran on different images (A: {side_a['n_images']} from {side_a['data']}, B: "
                     f"{side_b['n_images']} from {side_b['data']}): differences are not like for like")
    for tag, side in (("A", side_a), ("B", side_b)):
        if not side["has_robustness"]:
            notes.append(f"audit {tag} has no robustness section (an older audit): its shifts show as n/a")
    counts = {k: sum(1 for f in figures if f["change"] == k) for k in ("better", "worse", "same", "n/a")}
    checks = _checks(sa, sb)
    return {
        "a": side_a,
        "b": side_b,
        "difference": "B - A",
        "tolerance": TOLERANCE,
        "checks": checks,
        "figures": figures,
        "counts": counts,
        "checks_better": [c["name"] for c in checks if c["change"] == "better"],
        "checks_worse": [c["name"] for c in checks if c["change"] == "worse"],
        "notes": notes,
    }


def compare_audits(a_dir: str | Path, b_dir: str | Path, out: str | Path) -> dict:
    """Write out/comparison.json and out/comparison.html; return the comparison dict."""
    sa, sb = load_summary(a_dir), load_summary(b_dir)
    comp = compare_summaries(sa, sb, a_dir, b_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(comp, indent=2))
    from tumorlens.audit.compare_report import write_comparison_html

    write_comparison_html(comp, sa, sb, out / "comparison.html")
    return comp
