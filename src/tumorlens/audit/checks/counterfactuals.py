"""Counterfactual check: does the decision follow the tumor? (audit/counterfactuals.py)

On every image with a tumor mask: tumor removed (inpainted) and tumor only. Verdict on the mean
Delta-Drop of correct tumor cases: pass >= DROP_WARN, warn >= DROP_FAIL, fail below; also fail
when a class with at least CLASS_MIN_N tumor cases has a mean Delta-Drop below DROP_FAIL (a class
whose calls ignore the tumor is a finding even when the others pull the mean up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tumorlens.audit.checks.base import (
    FAIL, PASS, WARN, AuditContext, Check, CheckResult, Chunk, ChunkResult, Figure, ModelContext, VerdictItem,
)
from tumorlens.audit.counterfactuals import counterfactual_table, remove_tumor, summarise_counterfactuals, tumor_only

DROP_WARN = 0.20
DROP_FAIL = 0.05
CLASS_MIN_N = 20  # tumor cases a class needs before its own Delta-Drop counts

THRESHOLDS = {"counterfactuals": (f"mean Delta-Drop of correct tumor cases: pass >= {DROP_WARN}, fail < {DROP_FAIL}; "
                                  f"also fail when a class with >= {CLASS_MIN_N} tumor cases has mean Delta-Drop < "
                                  f"{DROP_FAIL}")}
COLUMNS = ("p_true_removed", "p_true_tumor_only", "delta_drop", "delta_focus", "delta_drop_mirror")


@dataclass
class CounterfactualResult(CheckResult):
    summary: dict | None  # summarise_counterfactuals(), None when no audited image has a tumor mask

    def to_summary(self) -> dict:
        return {"counterfactuals": self.summary}


class CounterfactualCheck(Check):
    name = "counterfactuals"
    thresholds = THRESHOLDS
    timing_key = "shortcuts_counterfactuals_summary"

    def start(self, ctx: AuditContext) -> None:
        self.tables: list[pd.DataFrame] = []
        self.any_tumor = False

    def map_chunk(self, ctx: ModelContext, c: Chunk) -> tuple[bool, pd.DataFrame | None]:
        any_tumor = any(m is not None and m.any() for m in c.tumors)
        if not ctx.config.counterfactuals:
            return any_tumor, None
        # images without a tumor get NaN rows (nothing to remove)
        masks = np.stack([m if m is not None else np.zeros(c.display.shape[1:], bool) for m in c.tumors])
        return any_tumor, counterfactual_table(ctx.model, c.display, masks, c.truth, c.probs,
                                               np.stack([r.background for r in c.regions]), ctx.config.forward_batch,
                                               np.stack([r.brain for r in c.regions]))

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        any_tumor, table = done.parts[self.name]
        self.any_tumor |= any_tumor
        if table is not None:
            self.tables.append(table)

    def finish(self, ctx: AuditContext) -> CounterfactualResult:
        if not (self.tables and self.any_tumor):
            return CounterfactualResult(None)
        cf = pd.concat(self.tables, ignore_index=True)
        classes, keep, truth = ctx.classes, ctx.keep, ctx.truth
        correct = ctx.pred() == truth
        cols = {c: cf[c].to_numpy() for c in COLUMNS}
        for i, r in enumerate(ctx.records):
            r.columns.update({c: cols[c][i] for c in COLUMNS})
            r.columns["prediction_tumor_removed"] = classes[cf["pred_removed"][i]] if cf["pred_removed"][i] >= 0 else ""
            r.columns["prediction_tumor_only"] = (classes[cf["pred_tumor_only"][i]] if cf["pred_tumor_only"][i] >= 0
                                                  else "")
        summary = summarise_counterfactuals(cf, truth, classes, correct)
        if keep is not None and keep.any():
            summary["leakage_free"] = summarise_counterfactuals(cf[keep].reset_index(drop=True), truth[keep], classes,
                                                                correct[keep])["all"]
        return CounterfactualResult(summary)

    def verdict(self, r: CounterfactualResult) -> VerdictItem | None:
        cf = r.summary
        if not (cf and cf.get("correct", {}).get("n", 0)):
            return None
        d = cf["correct"]["delta_drop_mean"]
        per = {c: v for c, v in (cf.get("by_class") or {}).items() if v.get("n", 0) >= CLASS_MIN_N}
        blind = sorted(c for c, v in per.items() if v["delta_drop_mean"] < DROP_FAIL)
        status = FAIL if blind else (PASS if d >= DROP_WARN else (WARN if d >= DROP_FAIL else FAIL))
        text = (f"removing the tumor lowers P(true class) by {d:.2f} on average over {cf['correct']['n']} correct "
                f"tumor cases ({cf['correct']['share_prediction_changes_when_removed']:.0%} change their prediction); "
                f"the tumor alone keeps P(true class) at {cf['correct']['delta_focus_mean']:.2f}")
        mirror = cf["correct"].get("delta_drop_mirror_mean")
        if mirror is not None:  # audits written before the mirror removal lack it
            text += (f"; with the tumor mirrored away instead (the removal --tumor-removal-p trains with, "
                     f"not judged) {mirror:.2f}")
        if per:
            text += "; mean Delta-Drop by class: " + ", ".join(f"{c} {v['delta_drop_mean']:.2f}"
                                                               for c, v in sorted(per.items()))
        if blind:
            text += (f". The {' and '.join(blind)} decisions do not depend on the tumor (Delta-Drop < {DROP_FAIL}): "
                     "the model finds that class without it")
        return VerdictItem(self.name, status, text)

    def figures(self, r: CounterfactualResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        if not r.summary:
            return []
        from tumorlens.audit import figures as F

        df = ctx.table()
        return [Figure("delta", F.delta_drop_boxes(df, fig_dir / "counterfactuals.png")),
                Figure("cf_examples", _examples(df, ctx.records, fig_dir / "counterfactual_examples.jpg"))]


def _examples(df: pd.DataFrame, records, path: Path) -> Path:
    """Original / tumor removed / tumor only: per class the correct case nearest the class's median
    Delta-Drop (what is typical), then the largest and the smallest Delta-Drop overall (the extremes)."""
    from tumorlens.audit import figures as F

    d = df[df["delta_drop"].notna()]
    picks: list[int] = []
    for _, g in d[d["correct"]].groupby("truth"):
        picks.append(int((g["delta_drop"] - g["delta_drop"].median()).abs().idxmin()))
    for i in (d["delta_drop"].idxmax(), d["delta_drop"].idxmin()):
        if int(i) not in picks:
            picks.append(int(i))
    tiles, caps = [], []
    for i in picks[:6]:
        rec = records[i]
        img = rec.display01()
        rem = remove_tumor(img, rec.tumor)
        only = tumor_only(img, rec.tumor, rec.fill)
        row = df.loc[i]
        name = Path(str(row["path"])).name
        for im, cap in ((img, f"{name} ({row['truth']}, predicted {row['prediction']})\noriginal: P(true) {row['p_true']:.2f}"),
                        (rem, f"tumor removed: P(true) {row['p_true_removed']:.2f}, predicted "
                              f"{row['prediction_tumor_removed']}\nDelta-Drop {row['delta_drop']:+.2f}"),
                        (only, f"tumor only: P(true) {row['p_true_tumor_only']:.2f}\n(Delta-Focus)")):
            tiles.append((np.clip(im, 0, 1) * 255).astype(np.uint8))
            caps.append(cap)
    return F.gallery(tiles, caps, path, cols=3)
