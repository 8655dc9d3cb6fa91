"""Shortcut test: can the model still classify when the brain is gone?

Three versions of every image go through the model: (a) brain blanked, so only skull, scalp and
background remain; (b) only the brain kept; (c) the full image. Blanked pixels take the image's
background grey. A model that reads the brain falls to chance on (a); one that beats chance by
a wide margin there has learned something outside the brain (scanner, framing, skull, markers).

Chance is the better of two blind guessers: always answering the majority class, and guessing
uniformly (1/K). A one-sided binomial test (scipy.stats.binomtest) asks whether accuracy on (a)
exceeds that rate; balanced accuracy (chance exactly 1/K) is reported beside it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import balanced_accuracy_score

from tumorlens.audit.counterfactuals import keep_only
from tumorlens.anatomy.regions import Regions

WIDE_MARGIN = 0.15  # accuracy points above chance that make "beats chance" a shortcut flag
ALPHA = 0.01


def blank_brain(image01: np.ndarray, regions: Regions, fill: float) -> np.ndarray:
    """(a) the brain set to the background grey: only skull, scalp and background remain."""
    return keep_only(image01, ~regions.brain, fill)


def brain_only(image01: np.ndarray, regions: Regions, fill: float) -> np.ndarray:
    """(b) everything outside the brain set to the background grey."""
    return keep_only(image01, regions.brain, fill)


def _accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(truth == pred)) if len(truth) else float("nan")


def shortcut_test(truth: np.ndarray, pred_full: np.ndarray, pred_blanked: np.ndarray, pred_brain_only: np.ndarray,
                  classes: list[str], margin: float = WIDE_MARGIN, alpha: float = ALPHA) -> dict:
    """Accuracies on the three versions, chance levels, the binomial test and the verdict."""
    truth = np.asarray(truth)
    n, k = len(truth), len(classes)
    if n == 0:
        return {"n": 0, "flagged": False, "message": "no labelled images: shortcut test not run"}
    counts = np.bincount(truth, minlength=k)
    chance_majority = float(counts.max() / n)
    chance = max(chance_majority, 1.0 / k)
    acc = {name: _accuracy(truth, p) for name, p in
           (("full", pred_full), ("brain_blanked", pred_blanked), ("brain_only", pred_brain_only))}
    labels = list(range(k))
    present = counts > 0
    bal = {}
    for name, p in (("full", pred_full), ("brain_blanked", pred_blanked), ("brain_only", pred_brain_only)):
        # recall averaged over the classes present in truth (sklearn's balanced accuracy)
        bal[name] = float(balanced_accuracy_score(truth, p)) if present.sum() > 1 else float("nan")
    hits = int(np.sum(truth == pred_blanked))
    test = binomtest(hits, n, chance, alternative="greater")
    above = acc["brain_blanked"] - chance
    flagged = bool(test.pvalue < alpha and above >= margin)
    per_class = {classes[c]: _accuracy(truth[truth == c], np.asarray(pred_blanked)[truth == c])
                 for c in labels if counts[c]}
    predicted_share = {classes[c]: float(np.mean(np.asarray(pred_blanked) == c)) for c in labels}
    if flagged:
        message = (f"SHORTCUT: with the brain blanked the model is still right on {acc['brain_blanked']:.0%} "
                   f"of {n} images, {above:+.0%} above chance ({chance:.0%}; binomial p = {test.pvalue:.1e}). "
                   "It classifies from outside the brain.")
    elif test.pvalue < alpha:
        message = (f"with the brain blanked accuracy is {acc['brain_blanked']:.0%}, slightly above chance "
                   f"({chance:.0%}, p = {test.pvalue:.1e}) but within {margin:.0%}: weak signal outside the brain.")
    else:
        message = (f"passed: with the brain blanked accuracy falls to {acc['brain_blanked']:.0%} "
                   f"(chance {chance:.0%}, p = {test.pvalue:.2f}).")
    return {
        "n": n,
        "accuracy": acc,
        "balanced_accuracy": bal,
        "chance_majority": chance_majority,
        "chance_uniform": 1.0 / k,
        "chance": chance,
        "blanked_above_chance": above,
        "binomial_p": float(test.pvalue),
        "margin": margin,
        "alpha": alpha,
        "flagged": flagged,
        "blanked_accuracy_per_class": per_class,
        "blanked_prediction_share": predicted_share,
        "message": message,
    }
