"""A shortcut the audit was not told about: a marker outside the brain on every training slice of
one class (meningioma). Tested with the marker on every slice and on that class only; both must fail
the shortcut and attention checks, the first flagged strategy cluster must hold the marker class and
the atlas must show the spot. A model trained without the marker, audited with it on every slice, must
not fail them. Small SimpleCNNs on 64 px phantoms, trained by tests/phantom_models.py; how often each
of these holds over 20 training seeds is in benchmarks/RESULTS.md (bench_phantom_seeds.py, issue 25):
the assertions below held on every seed (for the atlas the sweep records the hot spot's zone, not its
pixel position), so they do not rest on one seed's luck.
"""

import pytest

import phantom_models as P
from tumorlens.audit.planted import Marker, mark_samples

MARKED = P.MARKED


def status(summary, name):
    return next(c["status"] for c in summary["verdict"]["checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def audits(training_threads, tmp_path_factory):
    planted_training, training, testing = P.planted_sets(seed=0)
    planted = P.train(planted_training)
    clean = P.train(training)
    out = {}
    for name, model, test in (("all", planted, mark_samples(testing)),
                              ("class", planted, mark_samples(testing, MARKED)),
                              ("clean_model_all", clean, mark_samples(testing))):
        out[name] = P.audit(model, test, tmp_path_factory.mktemp(name), counterfactuals=False)
    return out


@pytest.mark.parametrize("variant", ["all", "class"])
def test_planted_marker_fails_shortcut_and_attention(audits, variant):
    s = audits[variant]
    assert status(s, "shortcut") == "fail", s["shortcut"]["statuses"]
    assert status(s, "attention") == "fail"
    assert s["verdict"]["status"] == "fail"
    bg = s["shortcut"]["background_removed"]
    assert bg["worst_class"] == MARKED  # the class that loses most calls without the background is the marked one
    if variant == "all":
        # the background test is what sees a cue that is on every slice (the blanked answers are one
        # constant there); with the marker on meningioma only, a model that also learned the tumor keeps
        # some of those calls, and the brain-blanked tests are the ones that catch it
        assert bg["status"] == "fail" and bg["worst_p"] < bg["alpha"], bg
    else:
        assert s["shortcut"]["statuses"]["brain_blanked_accuracy"] == "fail", s["shortcut"]["statuses"]


@pytest.mark.parametrize("variant", ["all", "class"])
def test_a_flagged_strategy_holds_the_marker_class_and_the_atlas_shows_the_spot(audits, variant):
    s = audits[variant]
    flagged = [c for c in s["strategies"]["clusters"] if c["flagged"]]
    assert flagged and s["strategies"]["clusters"][0]["flagged"]  # flagged first
    # the clearest lead first: the cluster looking furthest outside the brain is the marker's
    assert flagged[0]["class"] == MARKED, [(c["class"], c["n"], c["energy_outside_brain"]) for c in flagged]
    assert flagged[0]["energy"]["background"] > 0.5
    spot = s["atlas"]["by_predicted_class"][MARKED]["hot_spot"]
    t, b, l, r = Marker().box((P.SIZE, P.SIZE))
    tol = 6  # Grad-CAM's 16 x 16 map at 64 px: one cell is 4 px
    assert t - tol <= spot["y"] < b + tol and l - tol <= spot["x"] < r + tol, spot
    assert spot["zone"] == "background"


def test_a_clean_model_with_the_marker_on_every_slice_passes(audits):
    s = audits["clean_model_all"]
    assert status(s, "shortcut") != "fail", s["shortcut"]["statuses"]
    assert status(s, "attention") != "fail"
    # a clean model's clusters may spread their attention beyond the brain ("no tumor" calls have no
    # tumor to look at), but none looks as far outside as the planted model's marker cluster does
    marker_cluster = next(c for c in audits["all"]["strategies"]["clusters"] if c["flagged"])
    assert all(c["energy_outside_brain"] < marker_cluster["energy_outside_brain"] - 0.1
               for c in s["strategies"]["clusters"] if c["n"] >= 8)
    # (not asserted: where the atlas puts the clean model's hot spot. A bright square it never saw can
    # draw its meningioma calls' attention - a warning of the atlas, never a fail - on some seeds; see
    # the sweep's table in benchmarks/RESULTS.md)


def test_summary_keys(audits):
    s = audits["all"]
    cl = s["strategies"]["clusters"][0]
    assert set(cl) >= {"class", "n", "classes", "energy", "flagged"}
    assert set(cl["energy"]) == {"background", "skull", "brain", "tumor"}
    sc = s["shortcut"]
    for k in ("flagged", "accuracy", "binomial_p", "decision_invariance", "silhouette", "background_removed", "status"):
        assert k in sc
    for k in ("worst_class", "worst_lost", "worst_p", "lost_by_class", "null_loss_rate", "status"):
        assert k in sc["background_removed"]
    assert set(s["atlas"]) >= {"by_true_class", "by_predicted_class"}
