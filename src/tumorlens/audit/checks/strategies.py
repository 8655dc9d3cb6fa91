"""Strategies check: spectral relevance analysis of the per-image heatmaps (audit/strategies.py).

Reads the heatmaps, display images and region maps the ImageRecords keep (no extra forward pass).
Verdict: warn when there is a flagged cluster (attention mostly outside the brain), never fail: a
cluster is a lead to read with its figure (a clean model's "no tumor" calls, with no tumor to look
at, can spread their attention too); the shortcut and attention checks carry the fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tumorlens.audit.checks.atlas import records_arrays
from tumorlens.audit.checks.base import NA, PASS, WARN, AuditContext, Check, CheckResult, Figure, VerdictItem
from tumorlens.audit.strategies import OUTSIDE_BRAIN_FLAG, spray
from tumorlens.explain.methods import localisation_note

THRESHOLDS = {"strategies": (f"a cluster is flagged when >= {OUTSIDE_BRAIN_FLAG:.0%} of its attention lies outside the "
                             f"brain; warn when any is")}


@dataclass
class StrategiesResult(CheckResult):
    summary: dict
    n_images: int
    maps: list = field(repr=False, default_factory=list)

    def to_summary(self) -> dict:
        return {"strategies": self.summary}


class StrategiesCheck(Check):
    name = "strategies"
    thresholds = THRESHOLDS

    def finish(self, ctx: AuditContext) -> StrategiesResult:
        heat, imgs, rmaps, tumors, truth, pred = records_arrays(ctx)
        names = [r.sample.path for r in ctx.records]
        summary, maps = spray(heat, imgs, rmaps, tumors, truth, pred, ctx.classes, names, seed=ctx.config.seed)
        flagged_n = sum(c["n"] for c in summary["clusters"] if c["flagged"])
        summary["share_in_flagged_clusters"] = flagged_n / ctx.n if ctx.n else 0.0
        return StrategiesResult(summary, ctx.n, maps)

    def verdict(self, r: StrategiesResult) -> VerdictItem:
        cl = r.summary["clusters"]
        if not cl:
            return VerdictItem(self.name, NA, "no predictions to cluster")
        flagged = [c for c in cl if c["flagged"]]
        share = r.summary["share_in_flagged_clusters"]
        counts = ", ".join(f"{k} {v['n_clusters']}" for k, v in r.summary["per_class"].items())
        if not flagged:
            return VerdictItem(self.name, PASS, f"{len(cl)} strategy clusters ({counts} per predicted class); none has "
                                                f"most of its attention outside the brain")
        desc = "; ".join(f"predicted {c['class']}, {c['n']} images ("
                         + ", ".join(f"{k} {v}" for k, v in sorted(c["classes"].items(), key=lambda kv: -kv[1]))
                         + f"), {c['energy_outside_brain']:.0%} of the attention outside the brain" for c in flagged)
        return VerdictItem(self.name, WARN, f"{len(flagged)} of {len(cl)} strategy clusters look outside the brain "
                                              f"({share:.0%} of the images): {desc}")

    def figures(self, r: StrategiesResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F
        from tumorlens.audit.atlas_figures import strategies_figure
        from tumorlens.audit.checks.attention import tile

        if not r.summary["clusters"]:
            return []
        figs = [Figure("strategies", strategies_figure(r.summary, r.maps, fig_dir / "strategies.jpg"))]
        flagged = [c for c in r.summary["clusters"] if c["flagged"]]
        if flagged:
            df = ctx.table()
            picks = [(c, i) for c in flagged[:4] for i in c["examples"]]
            tiles = [tile(ctx.records[i], df.iloc[i]) for _, i in picks]
            caps = [f"cluster #{c['id']}: {Path(str(df.iloc[i]['path'])).name}\ntruth {df.iloc[i]['truth']} / pred "
                    f"{df.iloc[i]['prediction']}" for c, i in picks]
            figs.append(Figure("gallery_strategies", F.gallery(tiles, caps, fig_dir / "strategies_examples.jpg"),
                               title="Flagged strategy clusters: examples",
                               note="the images nearest each flagged cluster's mean heatmap; "
                               + localisation_note(ctx.model.recipe.size)))
        return figs
