"""Leakage check: is the accuracy measured on images the model (or its Training split) has seen?

Two sources of near twins (perceptual hash, evaluation/leakage.py): the dataset's own Training
split, and the model's own training data. Runs first: its `start` sets `ctx.keep`, the
leakage-free subset every other check reports on too. Verdict: warn when at least
LEAK_SHARE_WARN of the audited images have a twin, fail when accuracy without them drops by
LEAK_GAP_FAIL or more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorlens.audit.checks.base import FAIL, NA, PASS, WARN, AuditContext, Check, CheckResult, VerdictItem

LEAK_SHARE_WARN = 0.01  # share of audited images with a near twin in Training
LEAK_GAP_FAIL = 0.02  # accuracy lost without them

THRESHOLDS = {"leakage": (f"warn when >= {LEAK_SHARE_WARN:.0%} of audited images have a near twin in Training; fail "
                          f"when accuracy drops by >= {LEAK_GAP_FAIL:.0%} points without them")}


@dataclass
class LeakageResult(CheckResult):
    n: int
    accuracy: float
    twins_in_split: int | None  # None: not checked (no Training split, or --no-data-checks)
    twins_in_model_data: int | None  # None: not checked
    model_training_data: dict
    data_checks: dict | None  # the dataset check's report (summary.json "data_checks")
    data_checks_note: str
    accuracy_leakage_free: float | None = None  # None: no leakage-free image left, or nothing checked
    n_leakage_free: int | None = None

    @property
    def checked(self) -> bool:
        return self.twins_in_split is not None or self.twins_in_model_data is not None

    @property
    def n_twins(self) -> int:
        return self.n - (self.n_leakage_free or 0)

    def to_summary(self) -> dict:
        return {"data_checks": self.data_checks, "data_checks_note": self.data_checks_note,
                "leakage": {"near_twins_in_training_split": self.twins_in_split,
                            "near_twins_in_model_training_data": self.twins_in_model_data,
                            "model_training_data": self.model_training_data}}


def run_data_checks(samples, audited, progress: bool = True, ray: str | None = None,
                    ray_workers: int | None = None) -> tuple[dict, np.ndarray | None, str]:
    """(the dataset check's report as a dict, twin mask over audited images or None, note)."""
    from tumorlens.data.checks import check_dataset
    from tumorlens.evaluation.leakage import NO_TRAINING_SPLIT_NOTE, has_training_split, split_twin_mask

    report = check_dataset(samples, progress=progress, ray=ray, ray_workers=ray_workers)
    d = report.to_dict()
    d["n_near_twins_testing"] = len(d.pop("near_twins_testing"))
    if not has_training_split(samples):
        return d, None, NO_TRAINING_SPLIT_NOTE
    twin = split_twin_mask(report, audited)
    return d, twin, f"{int(twin.sum())} of {len(twin)} audited images have a near twin in Training (perceptual hash)"


class LeakageCheck(Check):
    name = "leakage"
    after = ("classification",)
    thresholds = THRESHOLDS
    timing_key = "data_checks"

    def start(self, ctx: AuditContext) -> None:
        from tumorlens.evaluation.leakage import model_training_twins

        cfg = ctx.config
        self.report, twin_split, self.note = None, None, "dataset checks skipped (--no-data-checks)"
        if cfg.data_checks:
            self.report, twin_split, self.note = run_data_checks(ctx.samples, ctx.audited, cfg.progress, cfg.ray,
                                                                 cfg.ray_workers)
        twin_model, self.model_data = model_training_twins(ctx.model, ctx.samples, ctx.audited, cfg.training_data,
                                                           cfg.progress)
        self.n_split = None if twin_split is None else int(twin_split.sum())
        self.n_model = None if twin_model is None else int(twin_model.sum())
        masks = [m for m in (twin_split, twin_model) if m is not None]
        ctx.keep = ~np.logical_or.reduce(masks) if masks else None

    def finish(self, ctx: AuditContext) -> LeakageResult:
        cls = ctx.results["classification"]
        res = LeakageResult(n=ctx.n, accuracy=cls.all["accuracy"], twins_in_split=self.n_split,
                            twins_in_model_data=self.n_model, model_training_data=self.model_data,
                            data_checks=self.report, data_checks_note=self.note)
        if ctx.keep is not None:
            for r, k in zip(ctx.records, ctx.keep):  # in the Training split or in the model's own training data
                r.columns["near_twin_in_training"] = bool(~k)
            res.n_leakage_free = int(ctx.keep.sum())
            if cls.leakage_free is not None:
                res.accuracy_leakage_free = cls.leakage_free["accuracy"]
        return res

    def verdict(self, r: LeakageResult) -> VerdictItem:
        if not r.checked:
            note = (r.model_training_data or {}).get("note", "")
            return VerdictItem(self.name, NA, f"accuracy {r.accuracy:.1%} on {r.n} images; {r.data_checks_note}"
                                              + (f"; model's training data: {note}" if note else ""))
        share = r.n_twins / r.n if r.n else 0.0
        where = " and ".join(w for w, k in (("the Training split", r.twins_in_split),
                                            ("the model's training data", r.twins_in_model_data))
                             if k is not None) or "Training"
        if r.accuracy_leakage_free is None:
            return VerdictItem(self.name, FAIL, f"every audited image has a near twin in {where}: accuracy "
                                                f"{r.accuracy:.1%} says nothing")
        gap = r.accuracy - r.accuracy_leakage_free
        status = FAIL if gap >= LEAK_GAP_FAIL else (WARN if share >= LEAK_SHARE_WARN else PASS)
        return VerdictItem(self.name, status,
                           f"accuracy {r.accuracy:.1%} on {r.n} images; {r.n_twins} ({share:.0%}) have a near twin in "
                           f"{where}; without them accuracy is {r.accuracy_leakage_free:.1%} on {r.n_leakage_free} "
                           f"images ({-gap:+.1%} points)")
