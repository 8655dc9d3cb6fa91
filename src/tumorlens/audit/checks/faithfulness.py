"""Explainer comparison (audit/faithfulness.py): deletion/insertion curves and localisation of
every compared explainer on the comparison subset, with its sanity outcome beside it.

No verdict line: the table is read beside the sanity check's verdict, which judges the
explainers; the per-image explainer's localisation is the attention check's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tumorlens.audit import attention as att
from tumorlens.audit.checks.base import AuditContext, Check, CheckResult, Figure
from tumorlens.audit.checks.explainer_maps import ExplainerMaps
from tumorlens.audit.checks.sanity import SanityResults
from tumorlens.audit.faithfulness import AUDIT_ROAD_PERCENTILES, curve_endpoints, deletion_insertion, road


@dataclass
class ComparisonResult(CheckResult):
    rows: list[dict] = field(default_factory=list)  # one per method: summary.json "explainers"
    curves: dict[str, dict] = field(default_factory=dict)  # method -> mean deletion/insertion curve

    def to_summary(self) -> dict:
        return {"explainers": self.rows, "faithfulness_curves": self.curves}


class FaithfulnessCheck(Check):
    name = "explainers"
    after = ("explainer_maps", "sanity")
    timing_key = "explainers"

    def finish(self, ctx: AuditContext) -> ComparisonResult:
        maps: ExplainerMaps = ctx.results["explainer_maps"]
        sanity: SanityResults = ctx.results["sanity"]
        bs = ctx.config.forward_batch
        truth = ctx.truth[maps.idx]
        res = ComparisonResult()
        ends = curve_endpoints(ctx.model, maps.display, maps.targets, maps.fills, bs)
        n_road = min(ctx.config.road_n, len(maps.idx))
        bar = tqdm(total=len(maps.heatmaps) * (len(maps.idx) + n_road), desc="comparing explainers", unit="img",
                   disable=not ctx.config.progress)
        for method, heat in maps.heatmaps.items():
            atts = [att.analyse_attention(h, reg, tum, correct=bool(t == y))
                    for h, reg, tum, t, y in zip(heat, maps.regions, maps.tumors, maps.targets, truth)]
            c = deletion_insertion(ctx.model, maps.display, heat, maps.targets, maps.fills, batch_size=bs,
                                   progress=bar.update, endpoints=ends)
            res.curves[method] = {"fractions": c.fractions.tolist(), "deletion": c.deletion.mean(0).tolist(),
                                  "insertion": c.insertion.mean(0).tolist()}
            s = sanity.by_method.get(method)  # None: the sanity check could not run on this model
            energy_tumor = [a.energy_tumor for a in atts if a.has_tumor]
            hits = [a.pointing_hit for a in atts if a.has_tumor]
            row = {
                "method": method,
                "n": len(maps.idx),
                "energy_tumor": float(np.mean(energy_tumor)) if energy_tumor else None,
                "pointing_game": float(np.mean(hits)) if hits else None,
                "energy_outside_brain": float(np.nanmean([a.energy_outside_brain for a in atts])),
                "focus_outside_brain": float(np.mean([a.focus in att.OUTSIDE_BRAIN for a in atts])),
                "deletion_auc": float(c.deletion_auc.mean()),
                "insertion_auc": float(c.insertion_auc.mean()),
                "sanity_passed": None if s is None else bool(s.passed),
                "sanity_spearman": None if s is None else s.final_spearman,
                "sanity_ssim": None if s is None else s.final_ssim,
                "ms_per_image": float(maps.ms_per_image[method]),
            }
            if n_road:
                row.update(_road_columns(ctx, maps, heat, n_road, bar.update))
            if method == ctx.config.primary:  # its time on every audited image, in the image pass
                row["ms_per_image_all_images"] = ctx.seconds_primary_explain * 1000 / max(ctx.n, 1)
            res.rows.append(row)
        bar.close()
        return res

    def figures(self, r: ComparisonResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F

        figs = []
        if r.curves:
            figs.append(Figure("curves", F.curves_figure(r.curves, fig_dir / "deletion_insertion.png")))
        maps: ExplainerMaps = ctx.results["explainer_maps"]
        if maps.heatmaps:
            figs.append(Figure("methods", _method_examples(maps, ctx, fig_dir / "explainers.jpg")))
        return figs


def _road_columns(ctx: AuditContext, maps: ExplainerMaps, heat: np.ndarray, n: int, progress) -> dict:
    """ROAD on the first n images of the comparison subset: the removal fills pixels by noisy
    imputation from their neighbours, so, unlike deletion's grey fill, the removed shape cannot
    tell the class (Rong et al. 2022)."""
    r = road(ctx.model, maps.display[:n], heat[:n], maps.targets[:n], AUDIT_ROAD_PERCENTILES,
             seed=ctx.config.seed, progress=progress)
    return {"road_n": n, "road_percentiles": list(r.percentiles), "road_morf": float(r.morf.mean()),
            "road_lerf": float(r.lerf.mean()), "road_combined": float(r.combined.mean())}


def _method_examples(maps: ExplainerMaps, ctx: AuditContext, path: Path) -> Path:
    """Up to three images of the comparison subset (different classes first), one column per explainer."""
    from tumorlens.audit import figures as F
    from tumorlens.explain import overlay

    examples = {m: h[: min(4, len(h))] for m, h in maps.heatmaps.items()}
    n = min(len(v) for v in examples.values())
    seen, order = set(), []
    for j in range(n):  # first image of each class, then the rest
        c = ctx.truth[int(maps.idx[j])]
        if c not in seen:
            seen.add(c)
            order.append(j)
    order = (order + [j for j in range(n) if j not in order])[:3]
    tiles, caps = [], []
    for j in order:
        rec = ctx.records[int(maps.idx[j])]
        for method, heat in examples.items():
            tiles.append(overlay(rec.display01(), heat[j], mask=rec.tumor, alpha=0.45))
            name = Path(str(rec.sample.path)).name
            caps.append(f"{method}\n{name} ({ctx.classes[rec.truth]}, pred {ctx.classes[rec.pred]})")
    return F.gallery(tiles, caps, path, cols=len(examples))
