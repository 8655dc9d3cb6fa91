"""Comparing two audits: checks side by side, key figures with B - A, missing sections tolerated."""

import copy
import json

import pytest
from typer.testing import CliRunner

from tumorlens.audit.compare import CompareError, compare_audits, compare_summaries, load_summary
from tumorlens.cli import app

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def summary(acc=0.99, lf_acc=0.98, blanked=0.49, outside=0.13, pointing=None, drop=None, shifts=None,
            statuses=None, version="m-old"):
    statuses = statuses or {"leakage": "warn", "shortcut": "fail", "attention": "warn"}
    s = {
        "model": {"version": version, "arch": "efficientnet_lite0", "classes": CLASSES, "input_size": 224},
        "data": {"root": "/data/kaggle", "audited_split": "Testing"},
        "n_images": 1311,
        "classification": {
            "all": {"accuracy": acc, "macro_f1": acc - 0.01, "ece": 0.02,
                    "per_class": {c: {"recall": acc} for c in CLASSES}},
            "leakage_free": {"accuracy": lf_acc, "macro_f1": lf_acc - 0.01},
        },
        "shortcut": {"accuracy": {"full": acc, "brain_blanked": blanked, "brain_only": 0.84}},
        "attention": {"all": {"share_correct_focused_outside_brain": outside, "pointing_game": pointing}},
        "verdict": {"status": "fail", "headline": "Problems found.", "checks": [{"name": k, "status": v, "detail": f"{k} is {v}"}
                                                 for k, v in statuses.items()],
                    "thresholds": {"shortcut": "fail when ..."}},
    }
    if drop is not None:
        s["counterfactuals"] = {"all": {"delta_drop_mean": drop},
                                "by_class": {"glioma": {"delta_drop_mean": drop / 2}}}
    if shifts is not None:
        s["robustness"] = {"worst_drop": max(acc - a for a in shifts.values()),
                           "shifts": [{"name": n, "params": {}, "accuracy": a, "macro_f1": a, "changed": 0.1,
                                       "leakage_free": {"accuracy": a - 0.01}} for n, a in shifts.items()]}
    return s


def by_key(comp):
    return {f["key"]: f for f in comp["figures"]}


def test_a_retrained_model_shows_what_it_fixed_and_what_it_broke():
    old = summary()
    new = summary(acc=0.97, lf_acc=0.985, blanked=0.33, outside=0.05, version="m-new",
                  shifts={"gamma 0.6": 0.96, "motion": 0.90},
                  statuses={"leakage": "warn", "shortcut": "pass", "attention": "fail", "robustness": "warn"})
    comp = compare_summaries(old, new)
    f = by_key(comp)
    assert f["accuracy"]["difference"] == pytest.approx(-0.02) and f["accuracy"]["change"] == "worse"
    assert f["leakage_free_accuracy"]["change"] == "better"
    # fewer right answers with the brain blanked is better
    assert f["brain_blanked_accuracy"]["difference"] == pytest.approx(-0.16)
    assert f["brain_blanked_accuracy"]["change"] == "better"
    assert f["attention_outside_brain"]["change"] == "better"
    assert f["recall/glioma"]["change"] == "worse"
    # the older audit has no robustness: shown with A missing, judged neither way
    assert f["shift/gamma 0.6"]["a"] is None and f["shift/gamma 0.6"]["b"] == 0.96
    assert f["shift/gamma 0.6"]["change"] == "n/a"
    assert f["shift_lf/motion"]["b"] == pytest.approx(0.89)
    assert any("audit A has no robustness" in n for n in comp["notes"])
    # figures neither audit has are left out
    assert "pointing_game" not in f and "delta_drop" not in f
    checks = {c["name"]: c for c in comp["checks"]}
    assert checks["shortcut"]["change"] == "better" and checks["attention"]["change"] == "worse"
    assert checks["leakage"]["change"] == "same" and checks["robustness"]["change"] == "only in B"
    assert comp["checks_better"] == ["shortcut"] and comp["checks_worse"] == ["attention"]
    assert comp["counts"]["better"] >= 3 and comp["counts"]["worse"] >= 2


def test_same_within_tolerance_and_shifts_matched_by_name():
    a = summary(pointing=0.30, drop=0.20, shifts={"gamma 0.6": 0.92, "jpeg 50": 0.99})
    b = copy.deepcopy(a)
    b["classification"]["all"]["accuracy"] += 0.001
    b["robustness"]["shifts"] = list(reversed(b["robustness"]["shifts"]))
    b["robustness"]["shifts"][1]["accuracy"] = 0.97  # gamma 0.6, now second in the list
    comp = compare_summaries(a, b)
    f = by_key(comp)
    assert f["accuracy"]["change"] == "same"
    assert f["shift/gamma 0.6"]["difference"] == pytest.approx(0.05) and f["shift/gamma 0.6"]["change"] == "better"
    assert f["shift/jpeg 50"]["change"] == "same"
    assert f["pointing_game"]["change"] == "same" and f["delta_drop/glioma"]["a"] == pytest.approx(0.10)
    assert comp["notes"] == []


def test_different_images_are_noted():
    b = summary()
    b["n_images"] = 44
    assert any("different images" in n for n in compare_summaries(summary(), b)["notes"])


def test_files_and_cli(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, s in ((a, summary()), (b, summary(blanked=0.3, shifts={"gamma 1.6": 0.91}, version="m-new"))):
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(s))
    comp = compare_audits(a, b, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert on_disk["figures"] == comp["figures"]
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert "accuracy with the brain blanked" in page and "m-new" in page and "data:image/png;base64," in page
    assert "-19.0 pts" in page  # 0.49 -> 0.30

    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert (b / "comparison.html").is_file() and "shortcut" in res.output


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(CompareError, match="summary.json not found"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(CompareError, match="not a readable"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CompareError, match="not a tumorlens audit"):
        load_summary(tmp_path)
    res = CliRunner().invoke(app, ["compare", str(tmp_path), str(tmp_path / "missing")])
    assert res.exit_code == 2 and "error" in res.output


def test_audit_compare_option_checks_the_folder_first_and_writes_the_comparison(tmp_path, monkeypatch):
    import tumorlens.audit.commands as commands

    ran = []

    def fake_run(model, data, out, *args, **kwargs):
        ran.append(out)
        out.mkdir(parents=True, exist_ok=True)
        s = summary(blanked=0.28, version="m-new")
        (out / "summary.json").write_text(json.dumps(s))
        return s

    monkeypatch.setattr(commands, "_run", fake_run)
    res = CliRunner().invoke(app, ["audit", "--demo", "--out", str(tmp_path / "new"), "--compare", str(tmp_path / "nope")])
    assert res.exit_code == 2 and not ran  # refused before the audit ran

    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps(summary()))
    res = CliRunner().invoke(app, ["audit", "--demo", "--out", str(tmp_path / "new"), "--compare", str(old)])
    assert res.exit_code == 0, res.output
    comp = json.loads((tmp_path / "new" / "comparison.json").read_text())
    assert comp["a"]["model"] == "m-old" and comp["b"]["model"] == "m-new"
    assert by_key(comp)["brain_blanked_accuracy"]["change"] == "better"
