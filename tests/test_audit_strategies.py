"""SpRAy strategy clusters on heatmaps made of two known strategies."""

import numpy as np

from tumorlens.audit.strategies import cluster_features, downsample, spray

from test_audit_atlas import CLASSES, S, blob, region_map


def two_strategies(n=60, seed=0):
    """Images predicted meningioma: a third look at a corner marker, the rest at tumors in the brain."""
    rng = np.random.default_rng(seed)
    heat, truth, marker = [], [], []
    for i in range(n):
        m = i % 3 == 0
        if m:
            h = blob(3 + rng.uniform(-1, 1), 3 + rng.uniform(-1, 1))
        else:
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(2, 12)
            h = blob(S / 2 + d * np.sin(a), S / 2 + d * np.cos(a), sigma=4)
        heat.append(h)
        truth.append(2 if m and i % 2 else 1)  # the marker cluster holds notumor and meningioma slices
        marker.append(m)
    return heat, np.array(truth), np.array(marker)


def test_the_marker_strategy_is_its_own_flagged_cluster_listed_first():
    heat, truth, marker = two_strategies()
    lm = region_map()
    n = len(heat)
    imgs = [np.full((S, S), 128, np.uint8)] * n
    summary, maps = spray(heat, imgs, [lm] * n, None, truth, np.ones(n, int), CLASSES,
                          names=[f"img{i}" for i in range(n)])
    cl = summary["clusters"]
    assert summary["per_class"]["meningioma"]["n_clusters"] >= 2
    assert cl[0]["flagged"] and cl[0]["class"] == "meningioma"
    assert cl[0]["energy"]["background"] > 0.8 and set(cl[0]) >= {"class", "n", "classes", "energy", "flagged"}
    # the flagged cluster is exactly the marker images
    flagged_members = sum(c["n"] for c in cl if c["flagged"])
    assert flagged_members == marker.sum()
    assert cl[0]["classes"] == {"meningioma": int((marker & (truth == 1)).sum()), "notumor": int((marker & (truth == 2)).sum())}
    assert all(not c["flagged"] for c in cl[1:]) and all(c["energy"]["brain"] > 0.8 for c in cl[1:])
    assert all(marker[i] for i in cl[0]["examples"]) and cl[0]["example_paths"][0].startswith("img")
    assert summary["n_flagged"] == 1 and len(maps) == len(cl)


def test_one_strategy_stays_one_cluster_and_small_classes_are_not_split():
    rng = np.random.default_rng(3)
    heat = [blob(S / 2 + rng.uniform(-2, 2), S / 2 + rng.uniform(-2, 2), sigma=6) for _ in range(40)]
    labels, info = cluster_features(downsample(heat))
    assert info["n_clusters"] == 1 and (labels == 0).all()
    labels, info = cluster_features(downsample(heat[:5]))
    assert info["n_clusters"] == 1 and "fewer" in info["reason"]


def test_downsample_features_sum_to_one():
    f = downsample([blob(10, 10), np.zeros((S, S))])
    assert f.shape == (2, 256) and np.allclose(f.sum(1), 1)
