"""The learned input check: how far an image's features lie from the training slices' features.

Detectors (benchmarks/bench_input_check.py compare measures them on the same features; RESULTS.md
has the figures and the choice):
- "knn": distance to the k-th nearest training slice after standardising, PCA and L2-normalising
  the features (Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors");
- "mahalanobis": smallest Mahalanobis distance to a class mean (dataset x class groups, one shared
  covariance, in the same PCA space; Lee et al. 2018).
Both are a few lines of NumPy on top of scikit-learn's PCA; scikit-learn's NearestNeighbors and
EmpiricalCovariance would need their fitted objects pickled to ship, which the reference file must
not do (it is read with allow_pickle=False), so the numbers they need are stored as plain arrays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "tumorlens-input-reference/1"
COMPONENTS = 96  # PCA dimensions kept
K = 5  # the k of the kNN distance
QUANTILE = 0.998  # threshold: this quantile of the validation slices' scores


@dataclass
class Reference:
    kind: str  # "mahalanobis" (the one shipped) | "knn"
    mean: np.ndarray  # (D,) feature standardisation
    scale: np.ndarray  # (D,)
    components: np.ndarray  # (d, D) PCA axes
    threshold: float
    bank: np.ndarray | None = None  # knn: (N, d) unit vectors of the fit slices
    k: int = K
    centres: np.ndarray | None = None  # mahalanobis: (G, d) group means
    precision: np.ndarray | None = None  # mahalanobis: (d, d) shared inverse covariance
    extractor: str = ""  # which feature extractor the statistics belong to

    def project(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) / self.scale) @ self.components.T

    def score(self, x: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) scores; higher = less like the training slices."""
        z = self.project(x)
        if self.kind == "knn":
            return knn_distance(z, self.bank.astype(np.float32), self.k)
        return min_mahalanobis(z, self.centres, self.precision)


def unit(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def knn_distance(z: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each unit vector of z to its k-th nearest unit vector of the bank."""
    sims = unit(z) @ bank.T
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    return np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0))


def min_mahalanobis(z: np.ndarray, centres: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = z[:, None, :] - centres[None]
    return np.sqrt(np.einsum("ngi,ij,ngj->ng", d, precision, d).min(axis=1))


def fit_reference(x: np.ndarray, groups: np.ndarray, val_x: np.ndarray, kind: str = "mahalanobis",
                  components: int = COMPONENTS, k: int = K, quantile: float = QUANTILE, extractor: str = "") -> Reference:
    """Fit on the training slices' features x (groups: their dataset/class), threshold on val_x."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, np.float32)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    pca = PCA(n_components=min(components, x.shape[1]), random_state=0).fit((x - mean) / scale)
    ref = Reference(kind, mean.astype(np.float32), scale.astype(np.float32), pca.components_.astype(np.float32), 0.0,
                    k=k, extractor=extractor)
    z = ref.project(x)
    if kind == "knn":
        ref.bank = unit(z).astype(np.float16)  # half precision: half the file, distances change < 1e-3
    elif kind == "mahalanobis":
        labels = np.asarray(groups)
        names = sorted(set(labels))
        ref.centres = np.stack([z[labels == g].mean(0) for g in names]).astype(np.float32)
        centred = z - ref.centres[[names.index(g) for g in labels]]
        ref.precision = np.linalg.pinv(np.cov(centred, rowvar=False)).astype(np.float32)
    else:
        raise ValueError(f"unknown detector {kind!r}; choose knn or mahalanobis")
    ref.threshold = float(np.quantile(ref.score(val_x), quantile))
    return ref


def save_reference(ref: Reference, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in vars(ref).items() if isinstance(v, np.ndarray)}
    meta = np.array([FORMAT, ref.kind, str(ref.threshold), str(ref.k), ref.extractor])
    with path.open("wb") as f:
        np.savez_compressed(f, meta=meta, **arrays)
    return path


def load_reference(path: str | Path) -> Reference:
    """Plain arrays only: allow_pickle=False, so a tampered file cannot run code."""
    with np.load(Path(path), allow_pickle=False) as data:
        fmt, kind, threshold, k, extractor = (str(v) for v in data["meta"])
        if fmt != FORMAT:
            raise ValueError(f"{path} is not a tumorlens input reference ({fmt})")
        arrays = {name: data[name] for name in data.files if name != "meta"}
    return Reference(kind=kind, threshold=float(threshold), k=int(k), extractor=extractor, **arrays)


def reference_path() -> Path:
    from tumorlens.assets import ASSETS

    return ASSETS / "input_reference.npz"


_LOCK = threading.Lock()
_SHARED: Reference | None = None


def shared_reference() -> Reference:
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            _SHARED = load_reference(reference_path())
        return _SHARED
