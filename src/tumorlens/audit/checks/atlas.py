"""Attention atlas check: where attention gathers per true and per predicted class (audit/atlas.py).

No extra forward pass: it reads the per-image heatmaps, display images and region maps every
ImageRecord keeps. Verdict: warn when the mean map of a predicted class with >= MIN_IMAGES calls
has its hot spot outside the brain (a fixed-place cue: marker, label, corner, logo); the figure
is the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tumorlens.audit.atlas import attention_atlas
from tumorlens.audit.checks.base import NA, PASS, WARN, AuditContext, Check, CheckResult, Figure, VerdictItem
from tumorlens.audit.config import PRIMARY_LABEL

MIN_IMAGES = 10
THRESHOLDS = {"atlas": f"warn when the mean {PRIMARY_LABEL} map of a predicted class (>= {MIN_IMAGES} calls) peaks outside the brain"}


@dataclass
class AtlasResult(CheckResult):
    summary: dict
    maps: dict = field(repr=False, default_factory=dict)

    def to_summary(self) -> dict:
        return {"atlas": self.summary}


def records_arrays(ctx: AuditContext):
    recs = ctx.records
    return ([r.heatmap for r in recs], [r.display for r in recs], [r.region_map for r in recs],
            [r.tumor for r in recs], ctx.truth, ctx.pred())


class AtlasCheck(Check):
    name = "atlas"
    thresholds = THRESHOLDS

    def finish(self, ctx: AuditContext) -> AtlasResult:
        heat, imgs, rmaps, tumors, truth, pred = records_arrays(ctx)
        summary, maps = attention_atlas(heat, imgs, rmaps, tumors, truth, pred, ctx.classes)
        return AtlasResult(summary, maps)

    def verdict(self, r: AtlasResult) -> VerdictItem:
        rows = r.summary["by_predicted_class"]
        if not rows:
            return VerdictItem(self.name, NA, "no predictions")
        off = {c: v for c, v in rows.items() if v["n"] >= MIN_IMAGES and v["hot_spot"]["zone"] != "brain"}
        parts = [f"{c}: {v['hot_spot']['zone']} at ({v['hot_spot']['x_frac']:.2f}, {v['hot_spot']['y_frac']:.2f}) "
                 f"of the image, {_share(v['energy']['brain'])} of the energy in the brain" for c, v in off.items()]
        if off:
            return VerdictItem(self.name, WARN, "the mean attention of predicted " + "; ".join(parts)
                               + " (x, y as fractions of the side): a cue at a fixed place outside the brain")
        return VerdictItem(self.name, PASS, "the mean attention of every predicted class peaks inside the brain ("
                           + ", ".join(f"{c} {_share(v['energy']['brain'])}" for c, v in rows.items()) + " of the energy there)")

    def figures(self, r: AtlasResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit.atlas_figures import atlas_figure

        if not r.maps["by_true_class"]:
            return []
        return [Figure("atlas", atlas_figure(r.summary, r.maps, ctx.classes, fig_dir / "atlas.jpg"))]


def _share(x: float | None) -> str:
    """A share as a percentage; maps with no energy at all (a model whose map is flat) have none."""
    return "n/a" if x is None else f"{x:.0%}"
