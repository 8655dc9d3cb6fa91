"""Attention check: is the model right for the wrong reason? (audit/attention.py)

The primary explainer's heatmap of every image is split by region (background, skull, brain,
tumor); the share of correct predictions whose peak lies outside the brain is the verdict:
pass < OFF_TARGET_WARN <= warn < OFF_TARGET_FAIL <= fail. Also the per-class table of the
report (accuracy, localisation, the shortcut and counterfactual columns), hence `after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tumorlens.audit import attention as att
from tumorlens.audit.checks.base import (
    FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Chunk, ChunkResult, Figure, ImageRecord, ModelContext,
    VerdictItem,
)
from tumorlens.audit.config import PRIMARY_LABEL, PRIMARY_METHOD
from tumorlens.explain.methods import localisation_note

OFF_TARGET_WARN = 0.10  # share of correct predictions whose map's peak lies outside the brain
OFF_TARGET_FAIL = 0.25

THRESHOLDS = {"correct_focused_outside_brain": f"pass < {OFF_TARGET_WARN:.0%} <= warn < {OFF_TARGET_FAIL:.0%} <= fail"}


@dataclass
class AttentionResult(CheckResult):
    all: dict  # summarise_part() of every audited image
    by_class: list[dict]
    leakage_free: dict | None = None
    method: str = PRIMARY_METHOD
    map_note: str = ""  # the map, its resolution and control score: stated beside every localisation figure
    pointing_tolerance_px: float = att.POINTING_TOLERANCE_PX
    edge_band_fraction: float = att.EDGE_BAND_FRACTION

    @property
    def off_target(self) -> float | None:
        return self.all["share_correct_focused_outside_brain"]

    def to_summary(self) -> dict:
        d = {"method": self.method, "map_note": self.map_note, "all": self.all, "by_class": self.by_class}
        if self.leakage_free is not None:
            d["leakage_free"] = self.leakage_free
        return {"attention": d, "terms": {"pointing_tolerance_px": self.pointing_tolerance_px,
                                          "edge_band_fraction": self.edge_band_fraction}}


class AttentionCheck(Check):
    name = "attention"
    after = ("shortcut", "counterfactuals")  # the per-class table shows their columns
    thresholds = THRESHOLDS
    timing_key = "shortcuts_counterfactuals_summary"

    def map_chunk(self, ctx: ModelContext, c: Chunk) -> list[dict]:
        pred = c.pred
        return [att.analyse_attention(c.heatmaps[j], c.regions[j], c.tumors[j], correct=bool(pred[j] == c.truth[j])).row()
                for j in range(len(c))]

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        for rec, row in zip(done.records, done.parts[self.name]):
            rec.columns.update(row)

    def finish(self, ctx: AuditContext) -> AttentionResult:
        df, keep = ctx.table(), ctx.keep
        primary = ctx.config.primary
        note = (localisation_note(ctx.model.recipe.size) if primary == PRIMARY_METHOD else
                f"the model exposes no CAM layer, so the per-image map is {primary} (gradient-free)")
        res = AttentionResult(all=summarise_part(df), by_class=by_class(df), method=primary, map_note=note)
        if keep is not None and keep.any():
            res.leakage_free = summarise_part(df[keep])
        return res

    def verdict(self, r: AttentionResult) -> VerdictItem:
        a, off = r.all, r.off_target
        if off is None:
            return VerdictItem(self.name, NA, "no correct predictions to examine")
        status = FAIL if off >= OFF_TARGET_FAIL else (WARN if off >= OFF_TARGET_WARN else PASS)
        text = (f"{off:.1%} of correct predictions ({a['flag_counts'].get(att.FLAG_RIGHT_WRONG_REASON, 0)} of "
                f"{a['n_correct']}) have their {PRIMARY_LABEL} peak outside the brain (skull, edge or background)")
        if a.get("pointing_game") is not None:
            text += (f"; peak on the tumor (pointing game, {r.pointing_tolerance_px} px tolerance) in "
                     f"{a['pointing_game']:.1%} of {a['n_with_tumor_mask']} images with a tumor mask")
        return VerdictItem(self.name, status, text)

    def figures(self, r: AttentionResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F

        df, recs, cfg = ctx.table(), ctx.records, ctx.config
        figs = [Figure("focus", F.focus_bars(r.all["focus_counts_correct"], r.all["focus_counts_wrong"],
                                             fig_dir / "focus.png")),
                Figure("energy", F.energy_boxes(df, fig_dir / "energy.png"))]

        def gallery(key, title, note, picks):
            figs.append(Figure(key, F.gallery([tile(recs[i], df.iloc[i]) for i in picks],
                                              [caption(df.iloc[i]) for i in picks], fig_dir / f"{key}.jpg"),
                               title=title, note=f"{note}; {r.map_note}"))

        correct = df["correct"].to_numpy()
        for key, title, mask in (("gallery_correct", "Correct predictions", correct),
                                 ("gallery_wrong", "Misclassified", ~correct)):
            pick = pick_by_class(df, mask, cfg.gallery_n, cfg.seed)
            if pick:
                gallery(key, title, "random, classes in turn", pick)
        off = (df["correct"] & df["focus"].isin(att.OUTSIDE_BRAIN)).to_numpy()
        order = np.argsort(-df["energy_outside_brain"].fillna(0).to_numpy())
        worst = [int(i) for i in order if off[i]][: cfg.gallery_n]
        note = "correct predictions whose peak lies outside the brain, most energy outside the brain first"
        if not worst:
            worst = [int(i) for i in order[: min(4, len(order))]]
            note = "no correct prediction is focused outside the brain; shown: the images with most energy outside it"
        gallery("gallery_off_target", "Worst off-target cases", note, worst)
        return figs


def pick_by_class(df: pd.DataFrame, mask: np.ndarray, n: int, seed: int) -> list[int]:
    """Up to n row indices where mask holds, classes taken in turn (seeded), so a gallery is not
    all one class."""
    rng = np.random.default_rng(seed)
    cand = np.flatnonzero(mask)
    groups = [list(rng.permutation(cand[df["truth"].to_numpy()[cand] == c])) for c in sorted(df["truth"].unique())]
    out: list[int] = []
    while len(out) < n and any(groups):
        for g in groups:
            if g and len(out) < n:
                out.append(int(g.pop(0)))
    return sorted(out)


def tile(rec: ImageRecord, row) -> np.ndarray:
    from tumorlens.audit import figures as F

    return F.overlay_with_regions(rec.display, rec.heatmap, rec.region_map, rec.tumor,
                                  (int(row["peak_y"]), int(row["peak_x"])))


def caption(row) -> str:
    name = Path(str(row["path"])).name
    mark = "ok" if row["correct"] else "WRONG"
    return f"{name}\ntruth {row['truth']} / pred {row['prediction']} ({row['confidence']:.2f}) {mark}\nfocus: {row['focus']}"


def by_class(df: pd.DataFrame) -> list[dict]:
    """One row per true class: accuracy, off-target focus, and where masks exist, tumor localisation
    and the counterfactual deltas (the classes can behave very differently)."""
    rows = []
    for cls, d in df.groupby("truth"):
        ok = d[d["correct"]]
        tum = d[d["has_tumor"]]
        row = {"class": cls, "n": len(d), "accuracy": float(d["correct"].mean()),
               "correct_focused_outside_brain": float(ok["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(ok) else None,
               "n_with_tumor_mask": len(tum),
               "energy_tumor": float(tum["energy_tumor"].mean()) if len(tum) else None,
               "concentration_tumor": float(tum["concentration_tumor"].mean()) if len(tum) else None,
               "pointing_game": float(tum["pointing_hit"].mean()) if len(tum) else None,
               "prediction_brain_blanked_right": float((d["prediction_brain_blanked"] == d["truth"]).mean())
               if "prediction_brain_blanked" in d else None}
        if "delta_drop" in d and d["delta_drop"].notna().any():
            row["delta_drop"] = float(d["delta_drop"].mean())
            row["delta_focus"] = float(d["delta_focus"].mean())
        rows.append(row)
    return rows


def summarise_part(d: pd.DataFrame) -> dict:
    ok = d[d["correct"]]
    wrong = d[~d["correct"]]
    tum = d[d["has_tumor"]]
    return {
        "n": len(d),
        "n_correct": len(ok),
        "share_correct_focused_outside_brain": float(ok["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(ok) else None,
        "share_wrong_focused_outside_brain": float(wrong["focus"].isin(att.OUTSIDE_BRAIN).mean()) if len(wrong) else None,
        "focus_counts_correct": {f: int((ok["focus"] == f).sum()) for f in att.FOCUS_LABELS},
        "focus_counts_wrong": {f: int((wrong["focus"] == f).sum()) for f in att.FOCUS_LABELS},
        "mean_energy": {k: float(d[f"energy_{k}"].mean()) for k in ("background", "skull", "brain")},
        "mean_energy_tumor": float(tum["energy_tumor"].mean()) if len(tum) else None,
        "mean_concentration_tumor": float(tum["concentration_tumor"].mean()) if len(tum) else None,
        "pointing_game": float(tum["pointing_hit"].mean()) if len(tum) else None,
        "n_with_tumor_mask": len(tum),
        "flag_counts": {fl: int(d["flags"].str.contains(fl, regex=False).sum())
                        for fl in (att.FLAG_RIGHT_WRONG_REASON, att.FLAG_WRONG_BACKGROUND, att.FLAG_WRONG_SKULL,
                                   att.FLAG_TUMOR_MISSED)},
    }
