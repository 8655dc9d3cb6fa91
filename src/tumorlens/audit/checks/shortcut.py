"""Shortcut check: does the model decide from outside the brain? (audit/shortcuts.py, invariance.py,
silhouette.py)

Every image of every chunk goes through the model four times more:
- brain blanked (only skull, scalp and background left): accuracy against chance (binomial test),
  and decision invariance: the share of decisions unchanged against the independence expectation
  sum_k p_full(k) p_blanked(k) (Cohen's kappa, permutation test). A model whose decisions survive
  the brain's removal fails, whatever its accuracy;
- brain only (everything outside it set to the background grey): reported beside;
- silhouette (only the outlines of head and brain, white on black): accuracy against chance and
  decision invariance; a model that classifies from it reads framing and contour;
- background removed (outside the head replaced by fresh noise of the background's own level, head
  untouched; invariance.replace_background, seeded by the audit's seed and the image's index): the
  share of each class's decisions that change, tested against the loss a clean model shows
  (binomial test). A cue that says one class on every slice leaves the blanked answers constant
  (nothing to compare); removing it shows which decisions it made.
Verdict: fail when any of the four fails (thresholds below), warn when one is significant but small.
`flagged` keeps its meaning (the brain-blanked accuracy test); `status` and `failed` say the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.audit.checks.base import (
    FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Chunk, ChunkResult, Figure, ModelContext, VerdictItem,
)
from tumorlens.audit.invariance import (
    ALPHA as INV_ALPHA,
    KAPPA_FAIL,
    LOST_FAIL,
    MIN_CLASS_DECISIONS,
    CLEAN_LOSS_RATE,
    background_dependence,
    decision_invariance,
    replace_background,
)
from tumorlens.audit.shortcuts import ALPHA, WIDE_MARGIN, blank_brain, brain_only, shortcut_test
from tumorlens.audit.silhouette import accuracy_vs_chance, silhouette

THRESHOLDS = {
    "shortcut": (f"fail when accuracy with the brain blanked beats chance by >= {WIDE_MARGIN * 100:.0f} "
                 f"points (binomial p < {ALPHA})"),
    "shortcut_decision_invariance": (f"fail when the decisions unchanged with the brain blanked (or on the silhouette) "
                                     f"exceed the independence expectation with Cohen's kappa >= {KAPPA_FAIL} "
                                     f"(permutation p < {INV_ALPHA}); warn when significant but smaller"),
    "shortcut_silhouette": (f"fail when accuracy on the outlines of head and brain alone beats chance by >= "
                            f"{WIDE_MARGIN * 100:.0f} points (binomial p < {ALPHA}), or by decision invariance"),
    "shortcut_background": (f"background removed (replaced by fresh noise of its own level): fail when a class with >= "
                            f"{MIN_CLASS_DECISIONS} calls loses >= {LOST_FAIL:.0%} of them and significantly more than "
                            f"{CLEAN_LOSS_RATE:.0%} (binomial p < {INV_ALPHA}, Bonferroni over classes); warn when "
                            f"significant but below {LOST_FAIL:.0%}"),
}


@dataclass
class ShortcutResult(CheckResult):
    test: dict  # shortcut_test(): accuracies, chance, binomial test, message
    leakage_free: dict | None = None
    decision_invariance: dict | None = None
    silhouette: dict | None = None
    background_removed: dict | None = None

    @property
    def n(self) -> int:
        return self.test.get("n", 0)

    def statuses(self) -> dict[str, str]:
        """Status of each part: blanked accuracy, decision invariance, silhouette, background removed."""
        t = self.test
        out = {"brain_blanked_accuracy": FAIL if t["flagged"] else (WARN if t["binomial_p"] < t["alpha"] else PASS)}
        if self.decision_invariance:
            out["decision_invariance"] = self.decision_invariance["status"]
        if self.silhouette:
            out["silhouette"] = self.silhouette["status"]
        if self.background_removed:
            out["background_removed"] = self.background_removed["status"]
        return out

    def status(self) -> str:
        st = self.statuses().values()
        return FAIL if FAIL in st else (WARN if WARN in st else PASS)

    def to_summary(self) -> dict:
        d = dict(self.test)
        if self.leakage_free is not None:
            d["leakage_free"] = self.leakage_free
        if self.n:
            d["decision_invariance"] = self.decision_invariance
            d["silhouette"] = self.silhouette
            d["background_removed"] = self.background_removed
            d["statuses"] = self.statuses()
            d["status"] = self.status()
            d["failed"] = [k for k, v in self.statuses().items() if v == FAIL]
        return {"shortcut": d}


def silhouette_part(truth, pred, pred_sil, classes) -> dict:
    acc = accuracy_vs_chance(truth, pred_sil, len(classes), WIDE_MARGIN, ALPHA)
    inv = decision_invariance(pred, pred_sil, classes)
    status = FAIL if acc.get("flagged") or inv["status"] == FAIL else (
        WARN if inv["status"] == WARN or acc.get("binomial_p", 1) < ALPHA else PASS)
    return {**acc, "decision_invariance": inv, "status": status,
            "prediction_share": inv.get("edited_prediction_share")}


class ShortcutCheck(Check):
    name = "shortcut"
    thresholds = THRESHOLDS
    timing_key = "shortcuts_counterfactuals_summary"

    def start(self, ctx: AuditContext) -> None:
        self.blanked: list[np.ndarray] = []
        self.kept: list[np.ndarray] = []
        self.outline: list[np.ndarray] = []
        self.no_background: list[np.ndarray] = []

    def map_chunk(self, ctx: ModelContext, c: Chunk) -> dict[str, np.ndarray]:
        versions = {
            "blanked": [blank_brain(d, r, f) for d, r, f in zip(c.display, c.regions, c.fills)],
            "kept": [brain_only(d, r, f) for d, r, f in zip(c.display, c.regions, c.fills)],
            "outline": [silhouette(r) for r in c.regions],
            "no_background": [replace_background(d, r.head, f, np.random.default_rng((ctx.config.seed, c.start + j)))
                              for j, (d, r, f) in enumerate(zip(c.display, c.regions, c.fills))],
        }
        # one forward pass over all four versions: fewer, fuller batches
        stacked = np.concatenate([np.stack(v) for v in versions.values()])
        pred = ctx.predict(stacked).argmax(1)
        n = len(c)
        return {name: pred[i * n:(i + 1) * n] for i, name in enumerate(versions)}

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        for name, pred in done.parts[self.name].items():
            getattr(self, name).append(pred)

    def finish(self, ctx: AuditContext) -> ShortcutResult:
        truth, pred, keep, classes = ctx.truth, ctx.pred(), ctx.keep, ctx.classes

        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        blanked, kept, outline, nobg = cat(self.blanked), cat(self.kept), cat(self.outline), cat(self.no_background)
        for r, b, k, o, g in zip(ctx.records, blanked, kept, outline, nobg):
            r.columns["prediction_brain_blanked"] = classes[b]
            r.columns["prediction_brain_only"] = classes[k]
            r.columns["prediction_silhouette"] = classes[o]
            r.columns["prediction_background_removed"] = classes[g]
        res = ShortcutResult(shortcut_test(truth, pred, blanked, kept, classes))
        if keep is not None and keep.any():
            res.leakage_free = shortcut_test(truth[keep], pred[keep], blanked[keep], kept[keep], classes)
        if res.n:
            res.decision_invariance = decision_invariance(pred, blanked, classes, seed=ctx.config.seed)
            res.silhouette = silhouette_part(truth, pred, outline, classes)
            res.background_removed = background_dependence(pred, nobg, classes)
        return res

    def verdict(self, r: ShortcutResult) -> VerdictItem:
        t = r.test
        if r.n == 0:
            return VerdictItem(self.name, NA, t.get("message", ""))
        inv, sil, bg = r.decision_invariance, r.silhouette, r.background_removed
        text = (t["message"] + f" Full images {t['accuracy']['full']:.0%}, only the brain "
                f"{t['accuracy']['brain_only']:.0%}.")
        if inv and inv.get("n"):
            text += (f" Decision invariance: {inv['unchanged']:.0%} of decisions unchanged with the brain blanked, "
                     f"{inv['expected_if_independent']:.0%} expected if independent (kappa {inv['kappa']:.2f}, "
                     f"p = {inv['permutation_p']:.1g})"
                     f"{' - the decisions survive the removal of the brain' if inv['status'] == FAIL else ''}.")
        if sil and sil.get("n"):
            si = sil["decision_invariance"]
            text += (f" Silhouette (outlines only): accuracy {sil['accuracy']:.0%} (chance {sil['chance']:.0%}), kappa "
                     f"{si['kappa']:.2f}{' - it classifies from framing and contour' if sil['status'] == FAIL else ''}.")
        if bg and bg.get("worst_class"):
            text += (f" Background removed: {bg['changed']:.0%} of decisions change; {bg['worst_class']} loses "
                     f"{bg['worst_lost']:.0%} of its calls (binomial p = {bg['worst_p']:.1g} against a clean "
                     f"model's {bg['null_loss_rate']:.0%})"
                     f"{' - a cue outside the head makes them' if bg['status'] == FAIL else ''}.")
        status = r.status()
        if status == FAIL and not t["flagged"]:
            text = ("SHORTCUT (" + ", ".join(k.replace("_", " ") for k, v in r.statuses().items() if v == FAIL) + "): "
                    + text.replace("passed: with", "the accuracy test passes, with", 1))
        return VerdictItem(self.name, status, text)

    def figures(self, r: ShortcutResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        from tumorlens.audit import figures as F

        return [Figure("shortcut", F.shortcut_bars(r.test, fig_dir / "shortcut.png"))] if r.n else []
