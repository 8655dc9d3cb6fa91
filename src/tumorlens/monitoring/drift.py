"""One window of recent predictions against the reference profile: is anything different, and how
accurate is the model likely to be there?

Tests (scipy.stats; chosen over Evidently, NannyML and alibi-detect by measurement, see
benchmarks/RESULTS.md, issue 29: they run the same tests at many times the import time and weight):
- each numeric feature: two-sample Kolmogorov-Smirnov against the reference's values;
- the predicted classes: chi-square test of the window's counts against the reference's (2 x K table);
- the share flagged by the input check: one-sided binomial test against the reference's share.
All of a window's p-values form one family: Bonferroni, so that a window without any change raises
an alert with probability at most `alpha` however many features are watched (Holm would flag the
same windows: the family is rejected exactly when its smallest p-value is below alpha / m).

Estimated accuracy without labels (confidence-based performance estimation, as NannyML's CBPE does
for a calibrated model): the expected accuracy of a window is the mean of its top-class
probabilities, since for a calibrated model each answer is right with the probability it states.
It raises an alert when it falls more than `accuracy_sigmas` standard errors (of the mean
confidence of a window this size, from the reference's spread) below the reference's own estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from tumorlens.monitoring.features import LABELS, NUMERIC
from tumorlens.monitoring.reference import ReferenceProfile, is_flagged

MIN_VALUES = 20  # fewer values of a feature on either side: not tested


@dataclass(frozen=True)
class Thresholds:
    alpha: float = 0.01  # family-wise false-alarm rate per window
    accuracy_sigmas: float = 3.0
    window: int = 200  # requests per window
    min_rows: int = 50  # a trailing window with fewer rows is not tested

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "accuracy_sigmas": self.accuracy_sigmas, "window": self.window,
                "min_rows": self.min_rows, "correction": "bonferroni"}


def _values(rows: Sequence[Mapping], name: str) -> np.ndarray:
    if name == "confidence":
        vals = [r.get("confidence") for r in rows]
    else:
        vals = [(r.get("features") or {}).get(name) for r in rows]
    return np.asarray([v for v in vals if v is not None], dtype=np.float64)


def expected_accuracy(rows: Sequence[Mapping]) -> float | None:
    """CBPE: mean top-class probability of the answered rows (None without any)."""
    conf = _values(rows, "confidence")
    return float(conf.mean()) if len(conf) else None


def compare_window(rows: Sequence[Mapping], reference: ReferenceProfile | None, thresholds: Thresholds = Thresholds(),
                   classes: Sequence[str] | None = None) -> dict:
    """The window's tests, estimate and alerts. Without a reference: counts and the estimate only."""
    answered = [r for r in rows if r.get("confidence") is not None]
    flagged = sum(1 for r in rows if is_flagged(r))
    out = {"n": len(rows), "answered": len(answered), "flagged_share": flagged / len(rows) if rows else None,
           "expected_accuracy": expected_accuracy(answered), "features": [], "classes": None, "ood": None,
           "accuracy": None, "alerts": []}
    classes = list(classes or (reference.class_counts if reference else []))
    counts = {c: sum(1 for r in answered if r.get("predicted_class") == c) for c in classes}
    if reference is None:
        out["classes"] = {"counts": counts}
        return out

    tests: list[tuple[dict, str]] = []  # (result entry, its p-value key), corrected together below
    for name in NUMERIC:
        ref, cur = reference.values(name), _values(rows, name)
        if len(ref) < MIN_VALUES or len(cur) < MIN_VALUES:
            continue
        ks = stats.ks_2samp(ref, cur)
        entry = {"feature": name, "label": LABELS[name], "statistic": float(ks.statistic), "p_value": float(ks.pvalue),
                 "reference_median": float(np.median(ref)), "window_median": float(np.median(cur))}
        out["features"].append(entry)
        tests.append((entry, "p_value"))

    ref_counts = np.array([reference.class_counts.get(c, 0) for c in classes], dtype=float)
    cur_counts = np.array([counts[c] for c in classes], dtype=float)
    if cur_counts.sum() >= MIN_VALUES and ref_counts.sum() > 0:
        table = np.vstack([ref_counts, cur_counts])
        table = table[:, table.sum(axis=0) > 0]  # a class never predicted on either side carries no information
        p = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
        ref_share, cur_share = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
        out["classes"] = {"counts": counts, "shares": dict(zip(classes, cur_share.round(4).tolist())),
                          "reference_shares": dict(zip(classes, ref_share.round(4).tolist())),
                          "total_variation": float(0.5 * np.abs(ref_share - cur_share).sum()), "p_value": p}
        tests.append((out["classes"], "p_value"))
    else:
        out["classes"] = {"counts": counts}

    if rows:
        # the reference share, with one pseudo-count, so a clean reference does not make one flag an alarm
        p0 = (reference.flagged + 1) / (reference.n + 2)
        p = float(stats.binomtest(flagged, len(rows), p0, alternative="greater").pvalue)
        out["ood"] = {"share": flagged / len(rows), "reference_share": reference.flagged / max(reference.n, 1),
                      "p_value": p}
        tests.append((out["ood"], "p_value"))

    m = len(tests)
    for entry, key in tests:
        entry["p_adjusted"] = min(1.0, entry[key] * m)
        entry["alert"] = entry["p_adjusted"] < thresholds.alpha
    for f in out["features"]:
        if f["alert"]:
            out["alerts"].append(f"input drift: {f['label']} (KS {f['statistic']:.2f}, adjusted p {f['p_adjusted']:.2g}; "
                                 f"median {f['reference_median']:.3g} in the reference, {f['window_median']:.3g} here)")
    if out["classes"].get("alert"):
        c = out["classes"]
        out["alerts"].append(f"predicted classes shifted (total variation {c['total_variation']:.2f}, adjusted p "
                             f"{c['p_adjusted']:.2g})")
    if out["ood"] and out["ood"]["alert"]:
        o = out["ood"]
        out["alerts"].append(f"{o['share']:.1%} of inputs flagged by the input check (reference "
                             f"{o['reference_share']:.1%}; adjusted p {o['p_adjusted']:.2g})")

    ref_conf = reference.values("confidence")
    if out["expected_accuracy"] is not None and len(ref_conf) >= MIN_VALUES:
        reference_estimate = float(ref_conf.mean())
        threshold = reference_estimate - thresholds.accuracy_sigmas * float(ref_conf.std(ddof=1)) / np.sqrt(len(answered))
        alert = out["expected_accuracy"] < threshold
        out["accuracy"] = {"estimated": out["expected_accuracy"], "reference_estimate": reference_estimate,
                           "reference_measured": reference.accuracy, "threshold": threshold, "alert": bool(alert)}
        if alert:
            out["alerts"].append(f"estimated accuracy {out['expected_accuracy']:.1%} is below {threshold:.1%} "
                                 f"(reference {reference_estimate:.1%})")
    return out
