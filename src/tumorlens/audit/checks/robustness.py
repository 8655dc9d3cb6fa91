"""Robustness check: does the accuracy survive the acquisition shifts of another scanner or export?

A seeded, class-stratified subset of the audited images (all of them when there are at most
AuditConfig.robustness_n) goes through the model again under each of the fixed, seeded shifts of
tumorlens.shifts (TorchIO's MRI transforms, and JPEG re-encoding). The shifts act on each chunk's
images while it is in memory, before the recipe's intensity step (see tumorlens.shifts).
Verdict: pass when every shift keeps accuracy within DROP_PASS of the clean accuracy of the same
images, warn within DROP_WARN, fail beyond. The leakage-free part of the subset is reported too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorlens.audit.checks.base import (
    FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, Chunk, ChunkResult, Figure, ModelContext, VerdictItem,
)
from tumorlens.shifts import ShiftEvaluation, acquired_images, evaluate_under_shifts, standard_shifts

DROP_PASS = 0.02  # accuracy points (as a share) a shift may cost and still pass
DROP_WARN = 0.05
THRESHOLDS = {"robustness": (f"pass when every acquisition shift keeps accuracy within {DROP_PASS * 100:.0f} points of "
                             f"the clean accuracy, warn within {DROP_WARN * 100:.0f}, fail beyond")}
EXAMPLES_PER_CLASS = 1
_EPS = 1e-9  # a drop of exactly 2 points passes


def status_of(drop: float | None) -> str:
    if drop is None:
        return NA
    return PASS if drop <= DROP_PASS + _EPS else (WARN if drop <= DROP_WARN + _EPS else FAIL)


def stratified_subset(truth: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of n images, each class in proportion (all when n is None or >= N)."""
    truth = np.asarray(truth)
    if n is None or n >= len(truth):
        return np.arange(len(truth))
    rng = np.random.default_rng([seed, 15])
    classes, counts = np.unique(truth, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota = np.maximum(quota, np.minimum(counts, 1))  # every class present
    for i in np.argsort(-(counts / counts.sum() * n - quota)):  # the remainder to the largest fractions
        if quota.sum() >= n:
            break
        if quota[i] < counts[i]:
            quota[i] += 1
    picks = [rng.permutation(np.flatnonzero(truth == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def summarise(ev: ShiftEvaluation, keep: np.ndarray | None) -> dict:
    """summary.json's robustness section (without the run's bookkeeping)."""
    clean = ev.clean()
    shifts = ev.metrics()
    lf_clean, lf_shifts = None, None
    if keep is not None and keep.any():
        lf_clean, lf_shifts = ev.clean(keep), ev.metrics(keep)
    for i, m in enumerate(shifts):
        m["drop"] = clean["accuracy"] - m["accuracy"] if m["accuracy"] is not None else None
        m["status"] = status_of(m["drop"])
        if lf_shifts is not None:
            lf = {k: lf_shifts[i][k] for k in ("n", "accuracy", "macro_f1", "changed", "per_class")}
            lf["drop"] = lf_clean["accuracy"] - lf["accuracy"]
            m["leakage_free"] = lf
    worst = max(shifts, key=lambda m: -np.inf if m["drop"] is None else m["drop"], default=None)
    out = {
        "n": clean["n"],
        "clean": clean,
        "shifts": shifts,
        "worst_shift": worst["name"] if worst else None,
        "worst_drop": worst["drop"] if worst else None,
        "n_shifts_beyond_pass": sum(1 for m in shifts if m["status"] in (WARN, FAIL)),
        "leakage_free": None,
    }
    if lf_shifts is not None:
        lf_worst = max(shifts, key=lambda m: m["leakage_free"]["drop"])
        out["leakage_free"] = {"n": lf_clean["n"], "clean": lf_clean, "worst_shift": lf_worst["name"],
                               "worst_drop": lf_worst["leakage_free"]["drop"]}
    return out


@dataclass
class RobustnessResult(CheckResult):
    section: dict  # summarise() plus subset, library and cost bookkeeping
    evaluation: ShiftEvaluation | None = None
    subset: np.ndarray | None = None  # indices into the audited images

    def to_summary(self) -> dict:
        return {"robustness": self.section}


class RobustnessCheck(Check):
    name = "robustness"
    after = ("leakage",)
    thresholds = THRESHOLDS
    timing_key = "robustness"

    def start(self, ctx: AuditContext) -> None:
        self.n_wanted = getattr(ctx.config, "robustness_n", None)
        self.enabled = self.n_wanted is None or self.n_wanted > 0
        self.subset = stratified_subset(ctx.truth, self.n_wanted, ctx.config.seed) if self.enabled else np.zeros(0, int)
        self.in_subset = np.zeros(ctx.n, bool)
        self.in_subset[self.subset] = True
        # example slices: the first subset images of each class
        self.examples = sorted(int(i) for c in np.unique(ctx.truth[self.subset])
                               for i in self.subset[ctx.truth[self.subset] == c][:EXAMPLES_PER_CLASS])
        self.shifts = list(standard_shifts(ctx.config.seed))
        self.parts: list[ShiftEvaluation] = []

    def map_chunk(self, ctx: ModelContext, c: Chunk) -> ShiftEvaluation | None:
        if not self.enabled:
            return None
        local = np.flatnonzero(self.in_subset[c.indices])
        if len(local) == 0:
            return None
        recipe = ctx.model.recipe
        if getattr(recipe, "intensity", "minmax") == "minmax":
            images = c.display[local]  # display is the acquired image for min-max recipes
        else:
            images = acquired_images(recipe, [c.samples[i].image for i in local])
        keep = [j for j, i in enumerate(local) if c.start + i in self.examples]
        # the noise is seeded by the position in the subset: subset images before this chunk, so a chunk
        # computed anywhere (a Ray worker, in any order) gets the noise it gets in a single process
        done = int(self.in_subset[: c.start].sum())
        return evaluate_under_shifts(ctx.model, images, c.truth[local], self.shifts, clean_probs=c.probs[local],
                                     seed=ctx.config.seed, batch_size=ctx.config.forward_batch, start=done,
                                     keep=keep, progress=False)

    def on_chunk(self, ctx: AuditContext, done: ChunkResult) -> None:
        if done.parts[self.name] is not None:
            self.parts.append(done.parts[self.name])

    def finish(self, ctx: AuditContext) -> RobustnessResult:
        if not self.enabled or not self.parts:
            why = "not run (--robustness-n 0)" if not self.enabled else "no images"
            return RobustnessResult({"n": 0, "shifts": [], "note": why, "worst_drop": None})
        ev = ShiftEvaluation.concat(self.parts)
        keep = ctx.keep[self.subset] if ctx.keep is not None else None
        section = summarise(ev, keep)
        section.update({
            "n_audited": ctx.n,
            "subset": ("all audited images" if len(self.subset) == ctx.n else
                       f"a seeded, class-stratified subset of {len(self.subset)} of {ctx.n} audited images "
                       "(--robustness-n)"),
            "seed": ctx.config.seed,
            "library": "TorchIO (MRI intensity, resampling and k-space artifact transforms); JPEG via Pillow",
            "renormalized": "each shifted image gets the recipe's clip and min-max scaling again, as a file would",
            "cost": {"seconds_total": round(ev.seconds_total, 2), "seconds_model": round(ev.seconds_model, 2),
                     "seconds_transforms": round(ev.seconds_transforms, 2), "model_passes": ev.model_passes,
                     "ratio_total_to_model": None if ev.cost_ratio is None else round(ev.cost_ratio, 3)},
            "examples": [int(i) for i in self.examples],
        })
        return RobustnessResult(section, ev, self.subset)

    def verdict(self, r: RobustnessResult) -> VerdictItem:
        s = r.section
        if not s.get("shifts"):
            return VerdictItem(self.name, NA, f"robustness to acquisition shifts: {s.get('note', 'not run')}")
        worst = next(m for m in s["shifts"] if m["name"] == s["worst_shift"])
        beyond = [m["name"] for m in s["shifts"] if m["status"] in (WARN, FAIL)]
        detail = (f"under {s['worst_shift']} accuracy falls from {s['clean']['accuracy']:.1%} to "
                  f"{worst['accuracy']:.1%} ({s['worst_drop'] * 100:.1f} points lost; "
                  f"{worst['changed']:.0%} of predictions change) on {s['n']} images; ")
        detail += (f"{len(beyond)} of {len(s['shifts'])} shifts cost more than {DROP_PASS * 100:.0f} points"
                   + (f" ({', '.join(beyond)})" if beyond else ""))
        lf = s.get("leakage_free")
        if lf:
            detail += f"; leakage-free ({lf['n']} images): worst {lf['worst_shift']}, {lf['worst_drop'] * 100:.1f} points"
        return VerdictItem(self.name, status_of(s["worst_drop"]), detail)

    def figures(self, r: RobustnessResult, ctx: AuditContext, fig_dir: Path) -> list[Figure]:
        if r.evaluation is None:
            return []
        figs = [Figure("robustness", accuracy_by_class_figure(r.section, ctx.classes, fig_dir / "robustness.png"))]
        if r.evaluation.kept:
            path = example_figure(r, ctx, fig_dir / "robustness_examples.jpg")
            figs.append(Figure("robustness_examples", path))
        return figs


def accuracy_by_class_figure(section: dict, classes: list[str], path: Path) -> Path:
    """Accuracy per shift (x), one line per true class and one for all images; clean first."""
    from tumorlens.audit.figures import _save
    import matplotlib.pyplot as plt

    names = ["clean"] + [m["name"] for m in section["shifts"]]
    rows = [section["clean"]] + section["shifts"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * len(names) + 2), 4.0))
    for c in classes:
        ys = [m["per_class"].get(c, {}).get("accuracy", np.nan) for m in rows]
        ax.plot(x, ys, marker="o", ms=4, lw=1, label=c)
    ax.plot(x, [m["accuracy"] for m in rows], marker="s", ms=5, lw=2.5, color="k", label="all images")
    clean = section["clean"]["accuracy"]
    ax.axhspan(clean - DROP_PASS, clean, color="#2e7d32", alpha=0.10, label=f"within {DROP_PASS * 100:.0f} points")
    ax.axhspan(clean - DROP_WARN, clean - DROP_PASS, color="#f9a825", alpha=0.12,
               label=f"within {DROP_WARN * 100:.0f} points")
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (recall of the class)")
    ax.set_ylim(max(0.0, np.nanmin([m["accuracy"] for m in rows] +
                                   [m["per_class"].get(c, {}).get("accuracy", 1.0) for m in rows for c in classes]) - 0.05),
                1.01)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.set_title(f"Accuracy under each acquisition shift ({section['n']} images)")
    return _save(fig, path)


def example_figure(r: RobustnessResult, ctx: AuditContext, path: Path) -> Path:
    """One row per example slice: clean, then each shift, each captioned with the prediction."""
    from tumorlens.audit.figures import gallery

    ev = r.evaluation
    classes = ctx.classes
    tiles, caps = [], []
    for j in sorted(ev.kept):
        i = int(r.subset[j])
        rec = ctx.records[i]
        truth = classes[ev.truth[j]]
        tiles.append(rec.display)
        caps.append(f"clean: {truth}\npred {classes[ev.clean_pred[j]]}{'' if ev.clean_pred[j] == ev.truth[j] else ' WRONG'}")
        for s in ev.shifts:
            img = ev.kept[j][s.name]
            p = int(ev.preds[s.name][j])
            tiles.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
            caps.append(f"{s.name}\npred {classes[p]}{'' if p == ev.truth[j] else ' WRONG'}")
    return gallery(tiles, caps, path, cols=len(ev.shifts) + 1, tile_px=150,
                   title="Example slices under each shift, with the model's prediction")
