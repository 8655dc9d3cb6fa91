"""Decision invariance: do the model's decisions survive an edit that removes the evidence?

When the brain is blanked (or only the head's outline is left), a model that reads the brain has
nothing to decide from: its answers on the edited images carry no information about its answers on
the full ones. The share of decisions left unchanged is then what two independent guessers with the
same answer rates would agree on, sum_k p_full(k) * p_edited(k) (the expected agreement of Cohen's
kappa). A share well above that means the decisions were made from what the edit kept.

Why not accuracy: a model that calls almost everything "meningioma" because of a marker outside the
brain keeps calling it meningioma with the brain blanked; its blanked accuracy can be below chance
while nearly all of its decisions are unchanged (issue 16: 92 % unchanged, 26 % accuracy).

The statistic is Cohen's kappa (sklearn.metrics.cohen_kappa_score), i.e. the excess agreement as a
share of the most that was possible: a plain difference cannot grow when both answer rates are
concentrated on one class (then the expectation itself is near 1). The test is a one-sided
permutation test of "edited answers independent of full answers" (the edited answers shuffled
across images, both answer rates kept): exact for any class balance, no asymptotics.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score

# more than "slight" agreement beyond chance (Landis & Koch 1977: kappa <= 0.2 is slight): the decisions
# survive the edit. Issue 16's marker model (93 % meningioma calls, 92 % unchanged) sits near 0.3.
KAPPA_FAIL = 0.2
ALPHA = 0.01
# background removed: a class losing this share of its decisions when only the background changes
LOST_FAIL = 0.5
LOST_WARN = 0.2
MIN_CLASS_DECISIONS = 10
N_PERMUTATIONS = 2000


def expected_agreement(pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int) -> float:
    """sum_k p_a(k) p_b(k): the share of equal answers if the two were independent."""
    n = len(pred_a)
    pa = np.bincount(pred_a, minlength=n_classes) / n
    pb = np.bincount(pred_b, minlength=n_classes) / n
    return float(np.sum(pa * pb))


def permutation_pvalue(pred_a: np.ndarray, pred_b: np.ndarray, n_permutations: int = N_PERMUTATIONS,
                       seed: int = 0, block: int = 250) -> float:
    """One-sided p of the observed agreement under independence (pred_b shuffled), with the +1
    correction so it is never 0."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    observed = int(np.sum(a == b))
    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, n_permutations, block):  # blocks keep memory at block x n
        m = min(block, n_permutations - start)
        shuffled = rng.permuted(np.broadcast_to(b, (m, len(b))), axis=1)
        at_least += int(np.sum((shuffled == a).sum(1) >= observed))
    return (1 + at_least) / (1 + n_permutations)


def decision_invariance(pred_full, pred_edited, classes: list[str], *, kappa_fail: float = KAPPA_FAIL, alpha: float = ALPHA,
                        n_permutations: int = N_PERMUTATIONS, seed: int = 0) -> dict:
    """Share of decisions unchanged by an edit, its independence expectation, kappa, the test, status."""
    a = np.asarray(pred_full, np.int64)
    b = np.asarray(pred_edited, np.int64)
    if a.shape != b.shape:
        raise ValueError(f"prediction arrays differ in length: {a.shape} vs {b.shape}")
    n, k = len(a), len(classes)
    if n == 0:
        return {"n": 0, "status": "n/a", "flagged": False}
    unchanged = float(np.mean(a == b))
    expected = expected_agreement(a, b, k)
    # kappa is undefined (0/0) when both answer sets are one and the same constant: no evidence either way
    kappa = float(cohen_kappa_score(a, b, labels=list(range(k)))) if expected < 1 else 0.0
    if not np.isfinite(kappa):
        kappa = 0.0
    p = permutation_pvalue(a, b, n_permutations, seed) if expected < 1 else 1.0
    significant = p < alpha
    status = "fail" if significant and kappa >= kappa_fail else ("warn" if significant and kappa > 0 else "pass")
    per_class = {}
    for c in range(k):
        sel = a == c
        if sel.any():
            per_class[classes[c]] = {"n": int(sel.sum()), "unchanged": float(np.mean(b[sel] == c))}
    return {
        "n": n,
        "unchanged": unchanged,
        "expected_if_independent": expected,
        "excess": unchanged - expected,
        "kappa": kappa,
        "permutation_p": float(p),
        "n_permutations": n_permutations,
        "alpha": alpha,
        "kappa_fail": kappa_fail,
        "status": status,
        "flagged": status == "fail",
        "unchanged_by_full_prediction": per_class,
        "edited_prediction_share": {classes[c]: float(np.mean(b == c)) for c in range(k)},
    }


def background_dependence(pred_full, pred_bg, classes: list[str], *, lost_fail: float = LOST_FAIL,
                          lost_warn: float = LOST_WARN, min_decisions: int = MIN_CLASS_DECISIONS) -> dict:
    """Decisions lost when only the background (outside the head) is set to its own grey.

    The complement of decision invariance: outside the head there is no anatomy, only the scanner's
    noise floor and whatever was burned in (a marker, a label, a logo), so a model that reads the
    head keeps its decisions. When a cue says one class on every slice (a marker everywhere),
    blanking the brain leaves the same cue on every image, the blanked answers are one constant and
    no comparison with the full answers can show anything; removing the cue instead shows which
    decisions it made. Per class k: the share of the full-image calls of k that change. A clean
    model loses a few decisions near its boundaries, spread over classes; a cue-driven class loses
    most of its calls.
    """
    a = np.asarray(pred_full, np.int64)
    b = np.asarray(pred_bg, np.int64)
    if a.shape != b.shape:
        raise ValueError(f"prediction arrays differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    if n == 0:
        return {"n": 0, "status": "n/a", "flagged": False}
    lost = {}
    for c, name in enumerate(classes):
        sel = a == c
        if sel.sum():
            lost[name] = {"n": int(sel.sum()), "lost": float(np.mean(b[sel] != c)),
                          "gained": int(np.sum((a != c) & (b == c)))}
    counted = {k: v for k, v in lost.items() if v["n"] >= min_decisions}
    worst = max(counted, key=lambda k: counted[k]["lost"]) if counted else None
    worst_lost = counted[worst]["lost"] if worst else 0.0
    status = "fail" if worst_lost >= lost_fail else ("warn" if worst_lost >= lost_warn else "pass")
    return {"n": n, "changed": float(np.mean(a != b)), "lost_by_class": lost, "worst_class": worst,
            "worst_lost": worst_lost, "lost_fail": lost_fail, "lost_warn": lost_warn,
            "min_class_decisions": min_decisions, "status": status, "flagged": status == "fail"}


def describe(inv: dict, edit: str) -> str:
    """One sentence for the verdict."""
    if not inv.get("n"):
        return f"{edit}: not run"
    return (f"{edit}: {inv['unchanged']:.0%} of decisions unchanged, {inv['expected_if_independent']:.0%} expected "
            f"if independent (kappa {inv['kappa']:.2f}, permutation p = {inv['permutation_p']:.1e})")
