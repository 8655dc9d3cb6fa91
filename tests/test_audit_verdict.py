"""The verdict from the summary's numbers: leakage, off-target attention, shortcut, sanity."""

from tumorlens.audit.verdict import make_verdict


def summary(acc=0.95, lf_acc=0.94, twins=10, n=100, off=0.02, flagged=False, p=0.5, sanity=True):
    return {
        "n_images": n,
        "classification": {"all": {"accuracy": acc}, "leakage_free": {"accuracy": lf_acc, "n": n - twins},
                           "near_twins_in_training": twins},
        "leakage": {"near_twins_in_training_split": twins, "near_twins_in_model_training_data": None},
        "attention": {"all": {"share_correct_focused_outside_brain": off, "n_correct": 90,
                              "flag_counts": {"correct but focused outside the brain": int(off * 90)},
                              "pointing_game": None}},
        "shortcut": {"n": n, "flagged": flagged, "binomial_p": p, "alpha": 0.01, "message": "m",
                     "accuracy": {"full": acc, "brain_only": 0.9}},
        "sanity": {"gradcam": {"passed": sanity, "message": "gradcam ..."}},
        "terms": {"pointing_tolerance_px": 5},
    }


def status(v, name):
    return next(c["status"] for c in v["checks"] if c["name"] == name)


def test_clean_summary_passes():
    v = make_verdict(summary(twins=0, lf_acc=0.95))
    assert v["status"] == "pass" and all(c["status"] == "pass" for c in v["checks"])


def test_leakage_that_inflates_accuracy_fails():
    v = make_verdict(summary(acc=0.98, lf_acc=0.93, twins=40))
    assert status(v, "leakage") == "fail" and v["status"] == "fail"
    assert "without them accuracy is 93.0%" in v["findings"][0]


def test_twins_without_accuracy_gap_warn():
    assert status(make_verdict(summary(acc=0.95, lf_acc=0.945, twins=30)), "leakage") == "warn"


def test_off_target_thresholds():
    assert status(make_verdict(summary(off=0.05)), "attention") == "pass"
    assert status(make_verdict(summary(off=0.15)), "attention") == "warn"
    assert status(make_verdict(summary(off=0.30)), "attention") == "fail"


def test_shortcut_and_sanity_failures():
    v = make_verdict(summary(flagged=True, p=1e-9, sanity=False))
    assert status(v, "shortcut") == "fail" and status(v, "sanity") == "fail"
    assert status(make_verdict(summary(p=0.001)), "shortcut") == "warn"


def test_no_split_means_leakage_not_applicable():
    s = summary()
    del s["classification"]["near_twins_in_training"]
    s["classification"]["leakage_free"] = None
    s["data_checks_note"] = "the dataset has no Training split"
    assert status(make_verdict(s), "leakage") == "n/a"


def cf_summary(drop_by_class, overall=0.3):
    by_class = {c: {"n": 50, "delta_drop_mean": d} for c, d in drop_by_class.items()}
    return {"correct": {"n": 150, "delta_drop_mean": overall, "delta_focus_mean": 0.5,
                        "share_prediction_changes_when_removed": 0.4}, "by_class": by_class}


def test_a_class_whose_calls_ignore_the_tumor_fails_the_counterfactual_check():
    s = summary()
    s["counterfactuals"] = cf_summary({"glioma": 0.4, "meningioma": 0.5, "pituitary": 0.0})
    v = make_verdict(s)
    assert status(v, "counterfactuals") == "fail"
    assert "pituitary decisions do not depend on the tumor" in v["findings"][-1]
    s["counterfactuals"] = cf_summary({"glioma": 0.4, "meningioma": 0.5, "pituitary": 0.3})
    assert status(make_verdict(s), "counterfactuals") == "pass"
    s["counterfactuals"] = cf_summary({"glioma": 0.1, "meningioma": 0.12}, overall=0.11)
    assert status(make_verdict(s), "counterfactuals") == "warn"
