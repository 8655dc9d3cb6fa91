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
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

# more than "slight" agreement beyond chance (Landis & Koch 1977: kappa <= 0.2 is slight): the decisions
# survive the edit. Issue 16's marker model (93 % meningioma calls, 92 % unchanged) sits near 0.3.
KAPPA_FAIL = 0.2
ALPHA = 0.01
# background removed (the background replaced by fresh noise of its own level, replace_background):
# a class fails when it loses >= LOST_FAIL of its calls AND that loss is significantly above
# CLEAN_LOSS_RATE (one-sided binomial test, p < ALPHA after Bonferroni over the tested classes); it
# warns when the loss is significant but below LOST_FAIL. CLEAN_LOSS_RATE bounds what a class of a
# model that reads the head loses to a fresh noise draw, measured on the phantom models (benchmarks/
# RESULTS.md, bench_phantom_seeds.py, issue 25): 0.00 for every class of 20 clean models on clean
# phantoms (<= 0.04 for 11 under-trained ones, which lost up to 0.78 to the former flat grey);
# with a bright marker they never saw on every slice, <= 0.11 in 19 of 20 and 0.36 once (binomial
# p = 0.14, a pass). A marker-driven class lost 0.80-1.00 of its calls (marker on every slice).
LOST_FAIL = 0.5
CLEAN_LOSS_RATE = 0.2
LOST_WARN = CLEAN_LOSS_RATE  # summary.json's key `lost_warn`: a loss must be significantly above it to warn
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


def replace_background(image01: np.ndarray, head: np.ndarray, fill: float, rng: np.random.Generator) -> np.ndarray:
    """The image with every pixel outside the head replaced by fresh noise of the background's own
    level: Gaussian around `fill` (the background's median) with the spread of the outside-head pixels
    (1.4826 x their median absolute deviation from `fill`: a marker, a label or a logo is a handful
    of outliers and does not widen it), clipped to [0, 1].

    Why not a flat grey: a model trained on slices whose background carries the scanner's noise
    floor has never seen a noise-free one, and a flat background moves a clean model's decisions
    wholesale (issue 25: a clean phantom model sent 18 of its 23 "notumor" calls to meningioma on a
    flat background, none on a fresh noise draw). Fresh noise removes whatever was burned in and
    keeps what every slice has. A background that is flat already (MAD 0) stays flat."""
    img = np.array(image01, np.float32, copy=True)
    out = ~np.asarray(head, bool)
    if not out.any():
        return img
    vals = img[out]
    sigma = 1.4826 * float(np.median(np.abs(vals - fill)))
    img[out] = np.clip(fill + sigma * rng.standard_normal(int(out.sum())), 0.0, 1.0) if sigma > 0 else fill
    return img


def background_dependence(pred_full, pred_bg, classes: list[str], *, lost_fail: float = LOST_FAIL,
                          lost_warn: float = LOST_WARN, min_decisions: int = MIN_CLASS_DECISIONS,
                          alpha: float = ALPHA) -> dict:
    """Decisions lost when only the background (outside the head) is replaced (replace_background).

    The complement of decision invariance: outside the head there is no anatomy, only the scanner's
    noise floor and whatever was burned in (a marker, a label, a logo), so a model that reads the
    head keeps its decisions. When a cue says one class on every slice (a marker everywhere),
    blanking the brain leaves the same cue on every image, the blanked answers are one constant and
    no comparison with the full answers can show anything; removing the cue instead shows which
    decisions it made. Per class k: the share of the full-image calls of k that change. A clean
    model loses a few decisions near its boundaries, spread over classes; a cue-driven class loses
    most of its calls.

    Could the loss be chance? Per class with >= min_decisions calls, a one-sided binomial test
    (scipy.stats.binomtest) of its lost calls against `lost_warn` (CLEAN_LOSS_RATE, the most a
    clean model's class loses), Bonferroni-corrected over the tested classes. A class fails when
    the test rejects at `alpha` and it lost >= lost_fail of its calls; warns when the test rejects
    and the loss is smaller. With 4 classes tested a class of 10 calls needs 7 lost to fail
    (corrected p = 0.003; 6 of 10 gives 0.026), one of 16 calls needs 9, one of 40 needs 20.
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
    status_of = {}
    for name, v in counted.items():
        k_lost = int(round(v["lost"] * v["n"]))
        p = float(binomtest(k_lost, v["n"], lost_warn, alternative="greater").pvalue)
        v["binomial_p"] = min(1.0, p * len(counted))  # Bonferroni over the tested classes
        significant = v["binomial_p"] < alpha
        status_of[name] = "fail" if significant and v["lost"] >= lost_fail else ("warn" if significant else "pass")
    worst = max(counted, key=lambda k: counted[k]["lost"]) if counted else None
    worst_lost = counted[worst]["lost"] if worst else 0.0
    st = set(status_of.values())
    status = "fail" if "fail" in st else ("warn" if "warn" in st else "pass")
    return {"n": n, "changed": float(np.mean(a != b)), "lost_by_class": lost, "worst_class": worst,
            "worst_lost": worst_lost, "worst_p": counted[worst]["binomial_p"] if worst else 1.0,
            "failed_classes": [k for k, v in status_of.items() if v == "fail"],
            "lost_fail": lost_fail, "lost_warn": lost_warn, "null_loss_rate": lost_warn, "alpha": alpha,
            "test": "one-sided binomial test of each class's lost calls against null_loss_rate, Bonferroni over classes",
            "edit": "outside the head replaced by fresh noise of the background's own median and spread",
            "min_class_decisions": min_decisions, "status": status, "flagged": status == "fail"}


def describe(inv: dict, edit: str) -> str:
    """One sentence for the verdict."""
    if not inv.get("n"):
        return f"{edit}: not run"
    return (f"{edit}: {inv['unchanged']:.0%} of decisions unchanged, {inv['expected_if_independent']:.0%} expected "
            f"if independent (kappa {inv['kappa']:.2f}, permutation p = {inv['permutation_p']:.1e})")
