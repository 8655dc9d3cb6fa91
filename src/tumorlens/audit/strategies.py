"""Strategies: spectral relevance analysis (SpRAy, Lapuschkin et al. 2019, "Unmasking Clever Hans
predictors", Nature Communications 10:1096).

Per predicted class, the per-image heatmaps are downsampled and clustered by spectral clustering;
each cluster is one way the model reaches that decision. A cluster whose attention lies mostly
outside the brain is a strategy that does not read the brain (the watermark of the original paper;
here a marker, a label, a corner) and is flagged, whatever the accuracy of its images.

Steps as in the paper: heatmaps downsampled (area interpolation) and scaled to sum 1; a symmetric
k-nearest-neighbour affinity (scikit-learn's kneighbors_graph); the number of clusters from the
largest eigengap of the normalised graph Laplacian (scipy), 1 to MAX_CLUSTERS; then
sklearn.cluster.SpectralClustering on that affinity. The eigengap heuristic is what SpRAy uses to
say how many strategies there are; it is computed here because SpectralClustering does not expose
its eigenvalues. (CoRelAy, the authors' pipeline, builds the same steps from the same libraries.)
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy.sparse.csgraph import laplacian
from sklearn.cluster import SpectralClustering
from sklearn.neighbors import kneighbors_graph

from tumorlens.audit.atlas import ZONES, energies, mean_energy, mean_maps

DOWNSAMPLE_PX = 16  # side of the heatmaps that are clustered
MAX_CLUSTERS = 4
MIN_IMAGES = 12  # a predicted class needs this many images to be split into strategies
N_NEIGHBORS = 10
OUTSIDE_BRAIN_FLAG = 0.5  # a cluster whose mean energy in background + skull reaches this is flagged
N_EXAMPLES = 4
GAP_RATIO = 2.0


def downsample(heatmaps, side: int = DOWNSAMPLE_PX) -> np.ndarray:
    """(n, side*side) float64 features: each heatmap area-resized and scaled to sum 1."""
    out = np.zeros((len(heatmaps), side * side), np.float64)
    for i, h in enumerate(heatmaps):
        small = cv2.resize(np.clip(np.asarray(h, np.float32), 0, None), (side, side), interpolation=cv2.INTER_AREA)
        s = float(small.sum())
        out[i] = small.ravel() / s if s > 0 else 1.0 / small.size
    return out


def affinity(features: np.ndarray, n_neighbors: int = N_NEIGHBORS) -> np.ndarray:
    """Symmetric 0/1 k-nearest-neighbour affinity (dense; one class holds at most a few thousand images)."""
    k = max(1, min(n_neighbors, len(features) - 1))
    a = kneighbors_graph(features, k, mode="connectivity", include_self=False).toarray()
    return np.maximum(a, a.T)


def eigengap_clusters(aff: np.ndarray, max_clusters: int = MAX_CLUSTERS) -> tuple[int, list[float]]:
    """Number of clusters k in 1..max_clusters at the largest eigengap of the normalised Laplacian
    (eigenvalues lambda_0 = 0 <= lambda_1 <= ..., returned too), counting only clear gaps.

    k clusters are real when the graph nearly falls apart into k pieces: lambda_0..lambda_(k-1)
    near 0, then a jump. The gap after k eigenvalues counts when it is at least GAP_RATIO times
    lambda_(k-1) (how much the k-way cut still cuts); for k = 1 that always holds, so a class with
    one strategy along a continuum (eigenvalues rising steadily) stays one cluster instead of
    being cut where the steady rise happens to step most.
    """
    lap = laplacian(aff, normed=True)
    m = min(max_clusters + 1, len(aff))
    ev = np.clip(np.sort(np.linalg.eigvalsh(lap))[:m], 0, None)
    if len(ev) < 2:
        return 1, ev.tolist()
    best_k, best_gap = 1, ev[1] - ev[0]
    for k in range(2, len(ev)):
        gap = ev[k] - ev[k - 1]
        if gap >= GAP_RATIO * ev[k - 1] and gap > best_gap:
            best_k, best_gap = k, gap
    return best_k, ev.tolist()


def cluster_features(features: np.ndarray, max_clusters: int = MAX_CLUSTERS, seed: int = 0,
                     n_neighbors: int = N_NEIGHBORS) -> tuple[np.ndarray, dict]:
    """Cluster labels (0..k-1) of one class's heatmap features, and how k was chosen."""
    n = len(features)
    if n < MIN_IMAGES:
        return np.zeros(n, np.int64), {"n_clusters": 1, "reason": f"fewer than {MIN_IMAGES} images", "eigenvalues": []}
    aff = affinity(features, n_neighbors)
    k, ev = eigengap_clusters(aff, max_clusters)
    info = {"n_clusters": k, "reason": "largest eigengap", "eigenvalues": ev}
    if k == 1:
        return np.zeros(n, np.int64), info
    sc = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected": components are clusters
        labels = sc.fit_predict(aff)
    return labels.astype(np.int64), info


def spray(heatmaps, images, region_maps, tumors, truth, pred, classes: list[str], names=None, *,
          max_clusters: int = MAX_CLUSTERS, seed: int = 0, flag_at: float = OUTSIDE_BRAIN_FLAG) -> tuple[dict, list]:
    """(summary, maps): summary["clusters"] is a list of {class, n, classes: {name: count},
    energy: {background, skull, brain, tumor}, flagged, ...}, flagged clusters first (most attention
    outside the brain first), then the others by size;
    maps[i] holds cluster i's mean heatmap, mean image and region map for the figure (not JSON)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    e = energies(heatmaps, region_maps, tumors)
    clusters, maps, per_class = [], [], {}
    for c, name in enumerate(classes):
        idx = np.flatnonzero(pred == c)
        if not len(idx):
            continue
        feats = downsample([heatmaps[i] for i in idx])
        labels, info = cluster_features(feats, max_clusters, seed)
        per_class[name] = {"n": int(len(idx)), "n_clusters": info["n_clusters"], "reason": info["reason"],
                           "eigenvalues": [round(v, 4) for v in info["eigenvalues"]]}
        for lab in range(int(labels.max()) + 1):
            members = idx[labels == lab]
            if not len(members):
                continue
            en = mean_energy(e[members])
            outside = (en["background"] or 0.0) + (en["skull"] or 0.0)
            centre = feats[labels == lab].mean(0)
            order = np.argsort(((feats[labels == lab] - centre) ** 2).sum(1))[:N_EXAMPLES]
            ex = [int(i) for i in members[order]]
            clusters.append({
                "class": name,
                "n": int(len(members)),
                "classes": {classes[k]: int(np.sum(truth[members] == k)) for k in range(len(classes))
                            if np.sum(truth[members] == k)},
                "energy": en,
                "energy_outside_brain": outside,
                "flagged": bool(outside >= flag_at),
                "accuracy": float(np.mean(truth[members] == c)),
                "examples": ex,
                "example_paths": [str(names[i]) for i in ex] if names is not None else [],
            })
            maps.append(mean_maps([heatmaps[i] for i in members], [images[i] for i in members],
                                  [region_maps[i] for i in members]))
    # flagged clusters first, the one looking furthest outside the brain first (the clearest lead: a
    # marker's cluster holds 0.9-1.0 of its attention there, a clean "no tumor" cluster that merely
    # spreads 0.5-0.75, and the latter can be the larger; issue 25's seed sweep), then the rest by size
    order = sorted(range(len(clusters)), key=lambda i: (not clusters[i]["flagged"],
                                                        -clusters[i]["energy_outside_brain"] if clusters[i]["flagged"] else 0.0,
                                                        -clusters[i]["n"]))
    clusters = [clusters[i] for i in order]
    maps = [maps[i] for i in order]
    for i, cl in enumerate(clusters):
        cl["id"] = i
    summary = {
        "method": "SpRAy: spectral clustering of per-image heatmaps per predicted class",
        "downsample_px": DOWNSAMPLE_PX,
        "max_clusters": max_clusters,
        "flag_outside_brain": flag_at,
        "zones": list(ZONES),
        "per_class": per_class,
        "n_flagged": int(sum(c["flagged"] for c in clusters)),
        "clusters": clusters,
    }
    return summary, maps
