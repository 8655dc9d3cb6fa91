"""Shortcut check: can the model still classify with the brain blanked? (audit/shortcuts.py)

Every image of every chunk goes through the model twice more: brain blanked, and brain only.
Verdict: fail when accuracy with the brain blanked beats chance by WIDE_MARGIN or more at
binomial p < ALPHA, warn when it beats chance significantly by less.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.audit.checks.base import FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Chunk, Figure, VerdictItem
from tumorlens.audit.shortcuts import ALPHA, WIDE_MARGIN, blank_brain, brain_only, shortcut_test

THRESHOLDS = {"shortcut": (f"fail when accuracy with the brain blanked beats chance by >= {WIDE_MARGIN * 100:.0f} "
                           f"points (binomial p < {ALPHA})")}


@dataclass
class ShortcutResult(CheckResult):
    test: dict  # shortcut_test(): accuracies, chance, binomial test, message
    leakage_free: dict | None = None

    @property
    def n(self) -> int:
        return self.test.get("n", 0)

    def to_summary(self) -> dict:
        d = dict(self.test)
        if self.leakage_free is not None:
            d["leakage_free"] = self.leakage_free
        return {"shortcut": d}


class ShortcutCheck(Check):
    name = "shortcut"
    thresholds = THRESHOLDS
    timing_key = "shortcuts_counterfactuals_summary"

    def start(self, ctx: AuditContext) -> None:
        self.blanked: list[np.ndarray] = []
        self.kept: list[np.ndarray] = []

    def on_chunk(self, ctx: AuditContext, c: Chunk) -> None:
        blanked = np.stack([blank_brain(d, r, f) for d, r, f in zip(c.display, c.regions, c.fills)])
        kept = np.stack([brain_only(d, r, f) for d, r, f in zip(c.display, c.regions, c.fills)])
        self.blanked.append(ctx.predict(blanked).argmax(1))
        self.kept.append(ctx.predict(kept).argmax(1))

    def finish(self, ctx: AuditContext) -> ShortcutResult:
        truth, pred, keep, classes = ctx.truth, ctx.pred(), ctx.keep, ctx.classes
        blanked = np.concatenate(self.blanked) if self.blanked else np.zeros(0, np.int64)
        kept = np.concatenate(self.kept) if self.kept else np.zeros(0, np.int64)
        for r, b, k in zip(ctx.records, blanked, kept):
            r.columns["prediction_brain_blanked"] = classes[b]
            r.columns["prediction_brain_only"] = classes[k]
        res = ShortcutResult(shortcut_test(truth, pred, blanked, kept, classes))
        if keep is not None and keep.any():
            res.leakage_free = shortcut_test(truth[keep], pred[keep], blanked[keep], kept[keep], classes)
        return res

    def verdict(self, r: ShortcutResult) -> VerdictItem:
        t = r.test
        if r.n == 0:
            return VerdictItem(self.name, NA, t.get("message", ""))
        status = FAIL if t["flagged"] else (WARN if t["binomial_p"] < t["alpha"] else PASS)
        return VerdictItem(self.name, status, t["message"] + f" Full images {t['accuracy']['full']:.0%}, only the brain "
                                                             f"{t['accuracy']['brain_only']:.0%}.")

    def figures(self, r: ShortcutResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F

        return [Figure("shortcut", F.shortcut_bars(r.test, fig_dir / "shortcut.png"))] if r.n else []
