"""The verdict: each check of the audit as pass / warn / fail with one plain sentence, from the
summary's numbers only (so the report, summary.json and the terminal say the same thing).

Thresholds are stated here and printed in the report; they are judgement calls, meant to be read
together with the figures, not instead of them.
"""

from __future__ import annotations

PASS, WARN, FAIL, NA = "pass", "warn", "fail", "n/a"

# share of correct predictions whose Grad-CAM peak lies outside the brain
OFF_TARGET_WARN = 0.10
OFF_TARGET_FAIL = 0.25
# leakage: share of audited images with a near twin in Training, and accuracy lost without them
LEAK_SHARE_WARN = 0.01
LEAK_GAP_FAIL = 0.02
# counterfactuals: mean Delta-Drop of correct tumor cases
DROP_WARN = 0.20
DROP_FAIL = 0.05
CLASS_MIN_N = 20  # tumor cases a class needs before its own Delta-Drop counts

THRESHOLDS = {
    "correct_focused_outside_brain": f"pass < {OFF_TARGET_WARN:.0%} <= warn < {OFF_TARGET_FAIL:.0%} <= fail",
    "leakage": (f"warn when >= {LEAK_SHARE_WARN:.0%} of audited images have a near twin in Training; fail when "
                f"accuracy drops by >= {LEAK_GAP_FAIL:.0%} points without them"),
    "shortcut": "fail when accuracy with the brain blanked beats chance by >= 15 points (binomial p < 0.01)",
    "sanity": "fail when Grad-CAM maps survive full model randomisation (Spearman >= 0.5 or SSIM >= 0.7)",
    "counterfactuals": (f"mean Delta-Drop of correct tumor cases: pass >= {DROP_WARN}, fail < {DROP_FAIL}; also fail "
                        f"when a class with >= {CLASS_MIN_N} tumor cases has mean Delta-Drop < {DROP_FAIL}"),
}


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def make_verdict(s: dict) -> dict:
    checks = []
    cls = s["classification"]
    acc = cls["all"]["accuracy"]
    lf = cls.get("leakage_free")
    n = s["n_images"]

    # 1. accuracy with and without leakage (near twins in the Training split and/or in the data the
    #    checkpoint says the model was trained on)
    leak = s.get("leakage") or {}
    if "near_twins_in_training" in cls:
        twins = cls["near_twins_in_training"]
        share = twins / n if n else 0.0
        where = " and ".join(w for w, k in (("the Training split", "near_twins_in_training_split"),
                                            ("the model's training data", "near_twins_in_model_training_data"))
                             if leak.get(k) is not None) or "Training"
        if lf is None:
            status, text = FAIL, f"every audited image has a near twin in {where}: accuracy {acc:.1%} says nothing"
        else:
            gap = acc - lf["accuracy"]
            status = FAIL if gap >= LEAK_GAP_FAIL else (WARN if share >= LEAK_SHARE_WARN else PASS)
            text = (f"accuracy {acc:.1%} on {n} images; {twins} ({share:.0%}) have a near twin in {where}; "
                    f"without them accuracy is {lf['accuracy']:.1%} on {lf['n']} images ({-gap:+.1%} points)")
        checks.append({"name": "leakage", "status": status, "detail": text})
    else:
        note = (leak.get("model_training_data") or {}).get("note", "")
        checks.append({"name": "leakage", "status": NA,
                       "detail": f"accuracy {acc:.1%} on {n} images; {s.get('data_checks_note', '')}"
                                 + (f"; model's training data: {note}" if note else "")})

    # 2. right for the wrong reason
    a = s["attention"]["all"]
    off = a["share_correct_focused_outside_brain"]
    if off is None:
        checks.append({"name": "attention", "status": NA, "detail": "no correct predictions to examine"})
    else:
        status = FAIL if off >= OFF_TARGET_FAIL else (WARN if off >= OFF_TARGET_WARN else PASS)
        k = a["flag_counts"]
        text = (f"{off:.1%} of correct predictions ({k.get('correct but focused outside the brain', 0)} of "
                f"{a['n_correct']}) have their Grad-CAM peak outside the brain (skull, edge or background)")
        if a.get("pointing_game") is not None:
            text += (f"; peak on the tumor (pointing game, {s['terms']['pointing_tolerance_px']} px tolerance) in "
                     f"{a['pointing_game']:.1%} of {a['n_with_tumor_mask']} images with a tumor mask")
        checks.append({"name": "attention", "status": status, "detail": text})

    # 3. shortcut test
    sc = s["shortcut"]
    if sc.get("n", 0) == 0:
        checks.append({"name": "shortcut", "status": NA, "detail": sc.get("message", "")})
    else:
        status = FAIL if sc["flagged"] else (WARN if sc["binomial_p"] < sc["alpha"] else PASS)
        text = (sc["message"] + f" Full images {sc['accuracy']['full']:.0%}, only the brain "
                f"{sc['accuracy']['brain_only']:.0%}.")
        checks.append({"name": "shortcut", "status": status, "detail": text})

    # 4. sanity of the per-image explainer (and the others)
    san = s.get("sanity") or {}
    prim = san.get("gradcam")
    if prim:
        others_failed = [m for m, r in san.items() if m != "gradcam" and m != "random" and not r["passed"]]
        status = FAIL if not prim["passed"] else (WARN if others_failed else PASS)
        text = prim["message"]
        if others_failed:
            text += f"; also failed: {', '.join(others_failed)}"
        checks.append({"name": "sanity", "status": status, "detail": text})

    # 5. counterfactuals: overall, and per class (a class whose calls ignore the tumor is a finding
    #    even when the others pull the mean up)
    cf = s.get("counterfactuals")
    if cf and cf.get("correct", {}).get("n", 0):
        d = cf["correct"]["delta_drop_mean"]
        per = {c: v for c, v in (cf.get("by_class") or {}).items() if v.get("n", 0) >= CLASS_MIN_N}
        blind = sorted(c for c, v in per.items() if v["delta_drop_mean"] < DROP_FAIL)
        status = PASS if d >= DROP_WARN else (WARN if d >= DROP_FAIL else FAIL)
        if blind:
            status = FAIL
        text = (f"removing the tumor lowers P(true class) by {d:.2f} on average over {cf['correct']['n']} correct "
                f"tumor cases ({cf['correct']['share_prediction_changes_when_removed']:.0%} change their prediction); "
                f"the tumor alone keeps P(true class) at {cf['correct']['delta_focus_mean']:.2f}")
        if per:
            text += "; mean Delta-Drop by class: " + ", ".join(f"{c} {v['delta_drop_mean']:.2f}" for c, v in sorted(per.items()))
        if blind:
            text += (f". The {' and '.join(blind)} decisions do not depend on the tumor (Delta-Drop < {DROP_FAIL}): "
                     "the model finds that class without it")
        checks.append({"name": "counterfactuals", "status": status, "detail": text})

    statuses = [c["status"] for c in checks]
    overall = FAIL if FAIL in statuses else (WARN if WARN in statuses else PASS)
    headline = {
        PASS: "No sign that the model decides from outside the brain or from leaked data.",
        WARN: "Warnings: read the flagged checks before trusting the accuracy.",
        FAIL: "The accuracy is not trustworthy as it stands: see the failed checks.",
    }[overall]
    return {
        "status": overall,
        "headline": headline,
        "checks": checks,
        "findings": [f"[{c['status']}] {c['name']}: {c['detail']}" for c in checks],
        "thresholds": THRESHOLDS,
    }
