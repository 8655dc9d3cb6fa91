"""Accuracy, macro-F1, calibration and the confusion matrix, on all audited images and on the
leakage-free subset. No verdict line of its own: the leakage check judges the gap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tumorlens.audit.checks.base import AuditContext, Check, CheckResult, Figure


@dataclass
class ClassificationResult(CheckResult):
    all: dict  # evaluation.metrics.classification_metrics
    leakage_free: dict | None = None
    near_twins_in_training: int | None = None  # None: leakage not checked

    def to_summary(self) -> dict:
        d: dict = {"all": self.all}
        if self.near_twins_in_training is not None:
            d["leakage_free"] = self.leakage_free
            d["near_twins_in_training"] = self.near_twins_in_training
        return {"classification": d}


class ClassificationCheck(Check):
    name = "classification"
    timing_key = "shortcuts_counterfactuals_summary"

    def finish(self, ctx: AuditContext) -> ClassificationResult:
        from tumorlens.evaluation.metrics import classification_metrics

        truth, probs, keep = ctx.truth, ctx.probs(), ctx.keep
        res = ClassificationResult(all=classification_metrics(truth, probs, ctx.classes))
        if keep is not None:
            res.leakage_free = classification_metrics(truth[keep], probs[keep], ctx.classes) if keep.any() else None
            res.near_twins_in_training = int((~keep).sum())
        return res

    def figures(self, r: ClassificationResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.evaluation.figures import confusion_matrix_figure, reliability_figure

        figs = [Figure("confusion", confusion_matrix_figure(r.all["confusion_matrix"], ctx.classes,
                                                            fig_dir / "confusion_matrix.png",
                                                            title=f"Confusion matrix ({r.all['n']} images)"))]
        if r.leakage_free:
            figs.append(Figure("confusion_lf", confusion_matrix_figure(
                r.leakage_free["confusion_matrix"], ctx.classes, fig_dir / "confusion_matrix_leakage_free.png",
                title=f"Leakage-free ({r.leakage_free['n']} images)")))
        figs.append(Figure("reliability", reliability_figure(ctx.probs(), ctx.truth, fig_dir / "reliability.png")))
        return figs
