"""Sanity check (audit/sanity.py): do the explainers' maps survive randomising the model?

Cascading model randomisation on the first config.sanity_n images of the comparison subset.
Verdict: fail when the per-image explainer's maps survive full randomisation (mean Spearman >=
MAX_SPEARMAN or SSIM >= MAX_SSIM), warn when another explainer's do (the random baseline aside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from tumorlens.audit.checks.base import FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Figure, VerdictItem
from tumorlens.audit.checks.explainer_maps import ExplainerMaps, explainer
from tumorlens.audit.config import PRIMARY_LABEL, PRIMARY_METHOD
from tumorlens.audit.sanity import MAX_SPEARMAN, MAX_SSIM, SanityResult, cascading_randomisation
from tumorlens.explain.methods import BASELINE_METHODS  # expected to fail: their failing is no finding

THRESHOLDS = {"sanity": (f"fail when {PRIMARY_LABEL} maps survive full model randomisation (Spearman >= {MAX_SPEARMAN} or "
                         f"SSIM >= {MAX_SSIM})")}


@dataclass
class SanityResults(CheckResult):
    by_method: dict[str, SanityResult] = field(default_factory=dict)
    primary: str = PRIMARY_METHOD
    not_run: str | None = None  # why the model cannot be randomised (a black box has no weights to reach)

    def to_summary(self) -> dict:
        d = {"sanity": {m: r.to_dict() for m, r in self.by_method.items()}}
        if self.not_run:
            d["sanity_not_run"] = self.not_run
        return d


class SanityCheck(Check):
    name = "sanity"
    needs = ("randomise",)
    after = ("explainer_maps",)
    thresholds = THRESHOLDS
    timing_key = "explainers"

    def finish(self, ctx: AuditContext) -> SanityResults:
        maps: ExplainerMaps = ctx.results["explainer_maps"]
        n = min(ctx.config.sanity_n, len(maps.idx))
        res = SanityResults(primary=ctx.config.primary)
        for method in tqdm(list(maps.heatmaps), desc="sanity check", unit="method", disable=not ctx.config.progress):
            res.by_method[method] = cascading_randomisation(
                ctx.model, maps.x[:n], maps.targets[:n], explainer(method, ctx.config.explain_batch(method)), method,
                seed=ctx.config.seed, original=maps.heatmaps[method][:n])
        return res

    def not_run(self, ctx: AuditContext, reason: str) -> SanityResults:
        return SanityResults(primary=ctx.config.primary, not_run=reason)  # empty: faithfulness reads by_method

    def verdict(self, r: SanityResults) -> VerdictItem | None:
        if r.not_run:
            return VerdictItem(self.name, NA, f"not run: {r.not_run}")
        prim = r.by_method.get(r.primary)
        if prim is None:
            return None
        others_failed = [m for m, s in r.by_method.items() if m != r.primary and m not in BASELINE_METHODS and not s.passed]
        status = FAIL if not prim.passed else (WARN if others_failed else PASS)
        text = prim.message + (f"; also failed: {', '.join(others_failed)}" if others_failed else "")
        return VerdictItem(self.name, status, text)

    def figures(self, r: SanityResults, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F

        if not r.by_method:
            return []
        return [Figure("sanity", F.sanity_figure({m: s.to_dict() for m, s in r.by_method.items()},
                                                 fig_dir / "sanity.png"))]
