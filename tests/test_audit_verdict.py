"""The verdict lines from the checks' typed results: leakage, off-target attention, shortcut,
sanity, counterfactuals; and the thresholds' text formatted from the constants beside each check."""

from tumorlens.audit.checks import attention, counterfactuals, leakage, sanity, shortcut
from tumorlens.audit.checks.attention import AttentionCheck, AttentionResult
from tumorlens.audit.checks.counterfactuals import CounterfactualCheck, CounterfactualResult
from tumorlens.audit.checks.leakage import LeakageCheck, LeakageResult
from tumorlens.audit.checks.sanity import SanityCheck, SanityResults
from tumorlens.audit.config import PRIMARY_METHOD
from tumorlens.audit.checks.shortcut import ShortcutCheck, ShortcutResult
from tumorlens.audit.sanity import SanityResult
from tumorlens.audit.verdict import make_verdict


def leak(acc=0.95, lf_acc=0.94, twins=10, n=100, checked=True):
    return LeakageResult(n=n, accuracy=acc, twins_in_split=twins if checked else None, twins_in_model_data=None,
                         model_training_data={"note": ""}, data_checks=None,
                         data_checks_note="the dataset has no Training split",
                         accuracy_leakage_free=lf_acc if checked else None, n_leakage_free=n - twins if checked else None)


def attn(off=0.02):
    return AttentionResult(all={"share_correct_focused_outside_brain": off, "n_correct": 90,
                                "flag_counts": {"correct but focused outside the brain": int(off * 90)},
                                "pointing_game": None}, by_class=[])


def short(flagged=False, p=0.5):
    return ShortcutResult({"n": 100, "flagged": flagged, "binomial_p": p, "alpha": 0.01, "message": "m",
                           "accuracy": {"full": 0.95, "brain_only": 0.9}})


def sane(passed=True):
    # the sanity verdict judges the audit's per-image map (PRIMARY_METHOD)
    return SanityResults({PRIMARY_METHOD: SanityResult(PRIMARY_METHOD, passed=passed, message="map ...")})


def status(item):
    return item.status


def test_clean_results_pass():
    items = [LeakageCheck().verdict(leak(twins=0, lf_acc=0.95)), AttentionCheck().verdict(attn()),
             ShortcutCheck().verdict(short()), SanityCheck().verdict(sane())]
    v = make_verdict(items, {})
    assert v["status"] == "pass" and all(c["status"] == "pass" for c in v["checks"])


def test_leakage_that_inflates_accuracy_fails():
    item = LeakageCheck().verdict(leak(acc=0.98, lf_acc=0.93, twins=40))
    assert item.status == "fail" and make_verdict([item], {})["status"] == "fail"
    assert "without them accuracy is 93.0%" in make_verdict([item], {})["findings"][0]


def test_twins_without_accuracy_gap_warn():
    assert LeakageCheck().verdict(leak(acc=0.95, lf_acc=0.945, twins=30)).status == "warn"


def test_no_split_means_leakage_not_applicable():
    item = LeakageCheck().verdict(leak(checked=False))
    assert item.status == "n/a" and "no Training split" in item.detail


def test_off_target_thresholds():
    assert AttentionCheck().verdict(attn(off=0.05)).status == "pass"
    assert AttentionCheck().verdict(attn(off=0.15)).status == "warn"
    assert AttentionCheck().verdict(attn(off=0.30)).status == "fail"


def test_shortcut_and_sanity_failures():
    assert ShortcutCheck().verdict(short(flagged=True, p=1e-9)).status == "fail"
    assert SanityCheck().verdict(sane(passed=False)).status == "fail"
    assert ShortcutCheck().verdict(short(p=0.001)).status == "warn"


def cf(drop_by_class, overall=0.3):
    by_class = {c: {"n": 50, "delta_drop_mean": d} for c, d in drop_by_class.items()}
    return CounterfactualResult({"correct": {"n": 150, "delta_drop_mean": overall, "delta_focus_mean": 0.5,
                                             "share_prediction_changes_when_removed": 0.4}, "by_class": by_class})


def test_a_class_whose_calls_ignore_the_tumor_fails_the_counterfactual_check():
    check = CounterfactualCheck()
    item = check.verdict(cf({"glioma": 0.4, "meningioma": 0.5, "pituitary": 0.0}))
    assert item.status == "fail" and "pituitary decisions do not depend on the tumor" in item.detail
    assert check.verdict(cf({"glioma": 0.4, "meningioma": 0.5, "pituitary": 0.3})).status == "pass"
    assert check.verdict(cf({"glioma": 0.1, "meningioma": 0.12}, overall=0.11)).status == "warn"


def test_threshold_text_follows_the_constants(monkeypatch):
    """The report prints each check's thresholds from the constants its verdict uses."""
    assert f"{attention.OFF_TARGET_WARN:.0%}" in attention.THRESHOLDS["correct_focused_outside_brain"]
    assert f"{leakage.LEAK_GAP_FAIL:.0%}" in leakage.THRESHOLDS["leakage"]
    assert f"{shortcut.WIDE_MARGIN * 100:.0f} points" in shortcut.THRESHOLDS["shortcut"]
    assert str(sanity.MAX_SPEARMAN) in sanity.THRESHOLDS["sanity"]
    assert str(counterfactuals.DROP_FAIL) in counterfactuals.THRESHOLDS["counterfactuals"]
    # the verdict uses the same constants: moving the threshold moves the status
    monkeypatch.setattr(attention, "OFF_TARGET_WARN", 0.01)
    assert AttentionCheck().verdict(attn(off=0.05)).status == "warn"
