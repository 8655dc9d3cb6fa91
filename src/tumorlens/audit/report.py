"""report.html: one self-contained page (figures embedded as base64 PNG) read top to bottom:
verdict, accuracy and calibration, where the model looks, shortcut test, counterfactuals,
galleries, explainers. It only renders what the audit computed (summary + per-image table)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, Undefined, select_autoescape

from tumorlens.audit import figures as F
from tumorlens.audit.attention import OUTSIDE_BRAIN
from tumorlens.audit.counterfactuals import remove_tumor, tumor_only


def _missing(x) -> bool:
    return x is None or isinstance(x, Undefined) or (isinstance(x, float) and not np.isfinite(x))


def _b64(path: Path) -> str:
    mime = "image/jpeg" if str(path).endswith(".jpg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _pick(df: pd.DataFrame, mask: np.ndarray, n: int, seed: int, by_class: bool = True) -> list[int]:
    """Up to n row indices where mask holds, classes taken in turn (seeded), so a gallery is not
    all one class."""
    rng = np.random.default_rng(seed)
    cand = np.flatnonzero(mask)
    if not by_class:
        return list(rng.permutation(cand)[:n])
    groups = [list(rng.permutation(cand[df["truth"].to_numpy()[cand] == c])) for c in sorted(df["truth"].unique())]
    out = []
    while len(out) < n and any(groups):
        for g in groups:
            if g and len(out) < n:
                out.append(int(g.pop(0)))
    return sorted(out)


def _tile(per, df, i) -> np.ndarray:
    row = df.iloc[i]
    return F.overlay_with_regions(per.display[i], per.heatmap[i], per.region_map[i], per.tumor[i],
                                  (int(row["peak_y"]), int(row["peak_x"])))


def _caption(row) -> str:
    name = Path(str(row["path"])).name
    mark = "ok" if row["correct"] else "WRONG"
    return f"{name}\ntruth {row['truth']} / pred {row['prediction']} ({row['confidence']:.2f}) {mark}\nfocus: {row['focus']}"


def write_report(summary: dict, df: pd.DataFrame, per, examples: dict, idx: np.ndarray, out: Path) -> Path:
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    classes = summary["model"]["classes"]
    seed = summary["config"]["seed"]
    n_gal = summary["config"]["gallery_n"]
    figs: dict[str, str] = {}

    from tumorlens.evaluation.figures import confusion_matrix_figure, reliability_figure

    cls = summary["classification"]
    probs = np.concatenate(per.probs)
    truth = np.array([classes.index(t) for t in df["truth"]])
    figs["confusion"] = _b64(confusion_matrix_figure(cls["all"]["confusion_matrix"], classes, fig_dir / "confusion_matrix.png",
                                                     title=f"Confusion matrix ({cls['all']['n']} images)"))
    if cls.get("leakage_free"):
        figs["confusion_lf"] = _b64(confusion_matrix_figure(cls["leakage_free"]["confusion_matrix"], classes,
                                                            fig_dir / "confusion_matrix_leakage_free.png",
                                                            title=f"Leakage-free ({cls['leakage_free']['n']} images)"))
    figs["reliability"] = _b64(reliability_figure(probs, truth, fig_dir / "reliability.png"))

    a = summary["attention"]["all"]
    figs["focus"] = _b64(F.focus_bars(a["focus_counts_correct"], a["focus_counts_wrong"], fig_dir / "focus.png"))
    figs["energy"] = _b64(F.energy_boxes(df, fig_dir / "energy.png"))
    if summary["shortcut"].get("n"):
        figs["shortcut"] = _b64(F.shortcut_bars(summary["shortcut"], fig_dir / "shortcut.png"))

    correct = df["correct"].to_numpy()
    galleries = []
    pick = _pick(df, correct, n_gal, seed)
    if pick:
        galleries.append(("Correct predictions", "random, classes in turn",
                          F.gallery([_tile(per, df, i) for i in pick], [_caption(df.iloc[i]) for i in pick],
                                    fig_dir / "gallery_correct.jpg")))
    pick = _pick(df, ~correct, n_gal, seed)
    if pick:
        galleries.append(("Misclassified", "random, classes in turn",
                          F.gallery([_tile(per, df, i) for i in pick], [_caption(df.iloc[i]) for i in pick],
                                    fig_dir / "gallery_wrong.jpg")))
    off = (df["correct"] & df["focus"].isin(OUTSIDE_BRAIN)).to_numpy()
    order = np.argsort(-df["energy_outside_brain"].fillna(0).to_numpy())
    worst = [int(i) for i in order if off[i]][:n_gal]
    note = "correct predictions whose peak lies outside the brain, most energy outside the brain first"
    if not worst:
        worst = [int(i) for i in order[: min(4, len(order))]]
        note = "no correct prediction is focused outside the brain; shown: the images with most energy outside it"
    galleries.append(("Worst off-target cases", note,
                      F.gallery([_tile(per, df, i) for i in worst], [_caption(df.iloc[i]) for i in worst],
                                fig_dir / "gallery_off_target.jpg")))
    galleries = [(t, n, _b64(p)) for t, n, p in galleries]

    cf = summary.get("counterfactuals")
    if cf:
        figs["delta"] = _b64(F.delta_drop_boxes(df, fig_dir / "counterfactuals.png"))
        figs["cf_examples"] = _b64(_counterfactual_examples(df, per, fig_dir / "counterfactual_examples.jpg"))

    if summary.get("faithfulness_curves"):
        figs["curves"] = _b64(F.curves_figure(summary["faithfulness_curves"], fig_dir / "deletion_insertion.png"))
    if summary.get("sanity"):
        figs["sanity"] = _b64(F.sanity_figure(summary["sanity"], fig_dir / "sanity.png"))
    if examples:
        figs["methods"] = _b64(_method_examples(examples, per, df, idx, fig_dir / "explainers.jpg"))

    env = Environment(loader=PackageLoader("tumorlens.audit", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["pct"] = lambda x, d=1: "n/a" if _missing(x) else f"{x:.{d}%}"
    env.filters["num"] = lambda x, d=2: "n/a" if _missing(x) else f"{x:.{d}f}"
    page = env.get_template("report.html.j2").render(s=summary, figs=figs, galleries=galleries,
                                                     checks=_checks_view(summary.get("data_checks")))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _counterfactual_examples(df: pd.DataFrame, per, path: Path) -> Path:
    """Original / tumor removed / tumor only: per class the correct case nearest the class's median
    Delta-Drop (what is typical), then the largest and the smallest Delta-Drop overall (the extremes)."""
    d = df[df["delta_drop"].notna()]
    picks: list[int] = []
    for _, g in d[d["correct"]].groupby("truth"):
        picks.append(int((g["delta_drop"] - g["delta_drop"].median()).abs().idxmin()))
    for i in (d["delta_drop"].idxmax(), d["delta_drop"].idxmin()):
        if int(i) not in picks:
            picks.append(int(i))
    tiles, caps = [], []
    for i in picks[:6]:
        img = per.display[i].astype(np.float32) / 255
        t = per.tumor[i]
        rem = remove_tumor(img, t)
        only = tumor_only(img, t, per.fills[i])
        row = df.loc[i]
        name = Path(str(row["path"])).name
        for im, cap in ((img, f"{name} ({row['truth']}, predicted {row['prediction']})\noriginal: P(true) {row['p_true']:.2f}"),
                        (rem, f"tumor removed: P(true) {row['p_true_removed']:.2f}, predicted "
                              f"{row['prediction_tumor_removed']}\nDelta-Drop {row['delta_drop']:+.2f}"),
                        (only, f"tumor only: P(true) {row['p_true_tumor_only']:.2f}\n(Delta-Focus)")):
            tiles.append((np.clip(im, 0, 1) * 255).astype(np.uint8))
            caps.append(cap)
    return F.gallery(tiles, caps, path, cols=3)


def _method_examples(examples: dict, per, df: pd.DataFrame, idx: np.ndarray, path: Path) -> Path:
    """Up to three images of the comparison subset (different classes first), one column per explainer."""
    n = min(len(v) for v in examples.values())
    seen, order = set(), []
    for j in range(n):  # first image of each class, then the rest
        c = df.iloc[int(idx[j])]["truth"]
        if c not in seen:
            seen.add(c)
            order.append(j)
    order = (order + [j for j in range(n) if j not in order])[:3]
    tiles, caps = [], []
    from tumorlens.explain import overlay

    for j in order:
        i = int(idx[j])
        img = per.display[i].astype(np.float32) / 255
        for method, maps in examples.items():
            tiles.append(overlay(img, maps[j], mask=per.tumor[i], alpha=0.45))
            row = df.iloc[i]
            caps.append(f"{method}\n{Path(str(row['path'])).name} ({row['truth']}, pred {row['prediction']})")
    return F.gallery(tiles, caps, path, cols=len(examples))


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
