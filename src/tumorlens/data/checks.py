"""Dataset checks: what a reader of an accuracy figure needs to know about the data behind it.

- counts per class and split, image sizes, channels as stored (RGB vs gray) and intensity by class,
  with findings when a class differs from the rest in a way a model could use instead of the
  tumor (a confounder);
- files that could not be read (at open time, or found damaged by this check's read, which removes
  them from the SampleSet and lists them in its skipped);
- near-duplicate images within and across splits: a 64-bit perceptual hash (imagehash.phash)
  and a Hamming threshold. Testing images with a near twin in Training measure memory, not
  generalisation; `DatasetReport.near_twins_testing` lists them so evaluation can score the rest.
- patients: near duplicates inside one patient, patients shared between splits, and (on request)
  what a slice-level split of a patient dataset would leak.

Threshold: DEFAULT_HAMMING = 2, calibrated on the shared data (benchmarks/bench_data_check.py
records the figures): at <= 2 bits, 99.7 % of JPEG re-encodings (q=70), 95 % of resamplings and
99 % of brightness changes of a slice still match, while only 0.5 % of figshare slices match a
slice of another patient (3.6 % at <= 4, 16 % at <= 6). pHash distances between images are even
(each hash has 32 bits set), so 2 is the first step above an exact match.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import imagehash
import numpy as np
from PIL import Image

from tumorlens.data.hash_index import pairs_within
from tumorlens.data.sample import Sample, SampleSet
from tumorlens.errors import TumorlensError

DEFAULT_HAMMING = 2
# Thresholds whose Testing->Training twin shares are always reported, to show how the figure moves.
SENSITIVITY_THRESHOLDS = (0, 2, 4, 6, 8)
SPLIT_ROLES = {
    "train": "train", "training": "train",
    "test": "test", "testing": "test",
    "val": "val", "valid": "val", "validation": "val",
}
# A class is flagged when it differs from the other classes by at least this effect size (Cohen's d)
# in a per-image statistic, or by this much in its share of files stored as RGB.
CONFOUNDER_EFFECT = 0.8
CONFOUNDER_CHANNEL_GAP = 0.3
UNLABELED = "(unlabeled)"
NO_SPLIT = "(all)"


@dataclass
class DuplicatePair:
    a: int
    b: int
    distance: int
    key_a: str
    key_b: str
    split_a: str
    split_b: str
    label_a: str | None
    label_b: str | None


@dataclass
class DatasetReport:
    root: str
    kind: str
    n_samples: int
    classes: list[str]
    hamming: int
    counts: dict[str, dict[str, int]]
    sizes: dict[str, dict[str, int]]
    channels: dict[str, dict[str, int]]
    colour_files: dict[str, int]
    intensity: dict[str, dict[str, float]]
    skipped: list[dict[str, str]]
    blank: list[str]
    pairs: list[DuplicatePair]
    near_twins_testing: set[str]
    cross_split: dict[str, dict]
    within_split: dict[str, dict]
    twin_share_by_threshold: dict[int, float]
    patients: dict
    simulated_split: dict | None
    findings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def testing_pairs(self) -> list[DuplicatePair]:
        """Near-twin pairs (test-role sample first, train-role sample second)."""
        out = []
        for p in self.pairs:
            roles = (_role(p.split_a), _role(p.split_b))
            if roles == ("test", "train"):
                out.append(p)
            elif roles == ("train", "test"):
                out.append(DuplicatePair(p.b, p.a, p.distance, p.key_b, p.key_a, p.split_b, p.split_a, p.label_b,
                                         p.label_a))
        return out

    def to_dict(self, include_pairs: bool = False) -> dict:
        d = {
            "root": self.root,
            "kind": self.kind,
            "n_samples": self.n_samples,
            "classes": self.classes,
            "hamming_threshold": self.hamming,
            "counts": self.counts,
            "sizes": self.sizes,
            "channels": self.channels,
            "colour_files": self.colour_files,
            "intensity": self.intensity,
            "skipped": self.skipped,
            "blank_images": self.blank,
            "n_duplicate_pairs": len(self.pairs),
            "near_twins_testing": sorted(self.near_twins_testing),
            "cross_split": self.cross_split,
            "within_split": self.within_split,
            "twin_share_by_threshold": {str(k): v for k, v in self.twin_share_by_threshold.items()},
            "patients": self.patients,
            "simulated_split": self.simulated_split,
            "findings": self.findings,
            "seconds": self.seconds,
        }
        if include_pairs:
            d["pairs"] = [p.__dict__ for p in self.pairs]
        return d


def sample_key(s: Sample) -> str:
    """The sample's path, plus '#index' for one slice of a volume or multi-frame file."""
    return s.key


def _role(split: str | None) -> str | None:
    return SPLIT_ROLES.get(str(split).lower()) if split is not None else None


# -- perceptual hashes ------------------------------------------------------------------------------
def phash64(image: np.ndarray) -> int | None:
    """64-bit pHash of a float image (min-max scaled to 8 bits first); None for a blank image."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return None
    u8 = ((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    bits = imagehash.phash(Image.fromarray(u8), hash_size=8).hash.ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hash_samples(samples: list[Sample], progress: bool = True, workers: int | None = None):
    """(hashes uint64 array, valid bool array): invalid for blank images, which have no hash, and for
    files that cannot be read (their samples keep the reason in sample.error). Streams in chunks."""
    from tumorlens.data.streaming import map_images

    got = map_images(lambda im: (phash64(im),), samples, workers=workers, progress=progress, desc="hashing")
    hashes = [g[0] if g is not None else None for g in got]
    valid = np.array([h is not None for h in hashes], dtype=bool)
    return np.array([h or 0 for h in hashes], dtype=np.uint64), valid


# Hash comparisons run block by block; a block holds at most this many pairs (8 bytes each while
# XORed), so memory stays flat however large the dataset (it grew with the dataset's size before).
BLOCK_PAIRS = 2_000_000


def _rows_per_block(n_other: int) -> int:
    return max(1, BLOCK_PAIRS // max(n_other, 1))


def hamming_pairs(ha: np.ndarray, hb: np.ndarray | None, threshold: int, block: int | None = None):
    """All (i, j, distance) with Hamming(ha[i], hb[j]) <= threshold; with hb None, pairs i < j in ha.

    Sorted by (i, j). An exact index (data/hash_index.py: pigeonhole over threshold + 1 bit blocks)
    instead of all pairs, so a million hashes take seconds; `block`: rows per block where it falls
    back to all pairs (large thresholds).
    """
    return pairs_within(ha, hb, threshold, block)


def nearest_distance(ha: np.ndarray, hb: np.ndarray, block: int | None = None, *, within: int | None = None) -> np.ndarray:
    """For each hash in ha, the smallest Hamming distance to any hash in hb. within: only distances up
    to it matter, and larger ones are given as within + 1; found through the near-duplicate index
    (the pairs within it, data/hash_index.py) instead of comparing all pairs."""
    if len(hb) == 0:
        return np.full(len(ha), 64 if within is None else within + 1, np.int64)
    if within is not None:
        out = np.full(len(ha), within + 1, np.int64)
        i, _, d = pairs_within(ha, hb, within, block)
        np.minimum.at(out, i, d)
        return out
    block = block or _rows_per_block(len(hb))
    out = [np.bitwise_count(ha[s : s + block, None] ^ hb[None, :]).min(axis=1) for s in range(0, len(ha), block)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


# -- per-image statistics ---------------------------------------------------------------------------
def _measure(img: np.ndarray) -> tuple[tuple[float, float, float, float], int | None]:
    return _image_stats(img), phash64(img)


def _image_stats(img: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, foreground share, edge mean), intensities relative to the image's max.

    Relative to max, so that 8-bit, 16-bit and float sources compare; foreground share (pixels
    above 10 % of max) measures framing; edge mean (outer 5 % band) catches borders and labels.
    """
    hi = float(img.max())
    if hi <= 0:
        return 0.0, 0.0, 0.0, 0.0
    scaled = img / hi
    h, w = img.shape
    b = max(1, min(h, w) // 20)
    edge = np.concatenate([scaled[:b].ravel(), scaled[-b:].ravel(), scaled[:, :b].ravel(), scaled[:, -b:].ravel()])
    return float(scaled.mean()), float(scaled.std()), float((scaled > 0.1).mean()), float(edge.mean())


STAT_NAMES = ("mean", "contrast", "foreground", "edge")
STAT_MEANING = {
    "mean": "brightness",
    "contrast": "contrast",
    "foreground": "framing (share of the image that is head)",
    "edge": "brightness at the image border",
}


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2:
        return 0.0
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


# -- the check --------------------------------------------------------------------------------------
def check_dataset(
    ds: SampleSet,
    hamming: int = DEFAULT_HAMMING,
    *,
    progress: bool = True,
    workers: int | None = None,
    simulate_split: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> DatasetReport:
    """Check a SampleSet; see the module docstring. simulate_split: None, "slice" or "patient".
    ray: a Ray cluster ('auto' or its address) whose workers read, hash and measure the images."""
    import time

    if not 0 <= hamming <= 64:
        raise TumorlensError(f"hamming threshold must lie in 0..64, got {hamming}")
    if simulate_split not in (None, "slice", "patient"):
        raise TumorlensError(f"simulate_split must be 'slice' or 'patient', got {simulate_split!r}")
    findings: list[str] = []
    seconds: dict[str, float] = {}
    # One streaming pass over the pixels (read, statistics, hash; nothing kept but the numbers). A file
    # found damaged only now is moved to ds.skipped, and left out of everything below.
    from tumorlens.data.streaming import map_images

    t0 = time.perf_counter()
    measured = map_images(_measure, ds.samples, workers=workers, progress=progress, desc="checking images", ray=ray,
                          ray_workers=ray_workers)
    seconds["read_stats_hash"] = time.perf_counter() - t0
    measured = [m for m in measured if m is not None]
    ds.drop_unreadable()
    samples = ds.samples
    labels = [s.label if s.label is not None else UNLABELED for s in samples]
    splits = [s.split if s.split is not None else NO_SPLIT for s in samples]
    keys = [sample_key(s) for s in samples]
    class_names = sorted(set(labels), key=lambda c: (c == UNLABELED, c))

    # Counts, sizes, channels.
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sizes: dict[str, Counter] = defaultdict(Counter)
    channels: dict[str, Counter] = defaultdict(Counter)
    colour: Counter = Counter()
    for s, lab, sp in zip(samples, labels, splits):
        counts[sp][lab] += 1
        h, w = s.shape
        sizes[lab][f"{h}x{w}"] += 1
        channels[lab][str(s.meta.get("channels", "unknown"))] += 1
        colour[lab] += bool(s.meta.get("color", False))

    # Intensity statistics and confounders.
    stats = np.array([m[0] for m in measured], dtype=np.float64).reshape(-1, len(STAT_NAMES))
    lab_arr = np.array(labels)
    intensity = {}
    for c in class_names:
        sel = stats[lab_arr == c]
        intensity[c] = {f"{n}": round(float(sel[:, k].mean()), 4) for k, n in enumerate(STAT_NAMES)}
        intensity[c].update({f"{n}_sd": round(float(sel[:, k].std()), 4) for k, n in enumerate(STAT_NAMES)})
    labelled = [c for c in class_names if c != UNLABELED]
    if len(labelled) > 1:
        for k, name in enumerate(STAT_NAMES):
            for c in labelled:
                d = _cohens_d(stats[lab_arr == c, k], stats[(lab_arr != c) & (lab_arr != UNLABELED), k])
                intensity[c][f"{name}_d"] = round(d, 2)
                if abs(d) >= CONFOUNDER_EFFECT:
                    findings.append(
                        f"confounder: {c} differs from the other classes in {STAT_MEANING[name]} "
                        f"(Cohen's d = {d:+.2f}); a model can use it without looking at a tumor"
                    )
        rgb_share = {c: channels[c].get("3", 0) / max(sum(channels[c].values()), 1) for c in labelled}
        if max(rgb_share.values()) - min(rgb_share.values()) >= CONFOUNDER_CHANNEL_GAP:
            shares = ", ".join(f"{c} {100 * v:.0f}%" for c, v in rgb_share.items())
            findings.append(f"confounder: share of files stored as RGB differs by class ({shares})")
        size_modes = {c: sizes[c].most_common(1)[0][0] for c in labelled}
        if len(set(size_modes.values())) > 1:
            findings.append(
                "confounder: the usual image size differs by class ("
                + ", ".join(f"{c} {v}" for c, v in size_modes.items()) + ")"
            )

    skipped = [{"path": k.path, "reason": k.reason} for k in ds.skipped]
    if skipped:
        findings.append(f"{len(skipped)} file(s) could not be read and were skipped (listed under 'skipped')")

    # Near duplicates.
    hashes = np.array([m[1] or 0 for m in measured], dtype=np.uint64)
    valid = np.array([m[1] is not None for m in measured], dtype=bool)
    blank = [keys[i] for i in np.nonzero(~valid)[0]]
    if blank:
        findings.append(f"{len(blank)} blank (constant) image(s); left out of the duplicate search")
    t0 = time.perf_counter()
    vidx = np.nonzero(valid)[0]
    ii, jj, dd = hamming_pairs(hashes[vidx], None, hamming)
    pairs = [
        DuplicatePair(int(a), int(b), int(d), keys[a], keys[b], splits[a], splits[b],
                      samples[a].label, samples[b].label)
        for a, b, d in zip(vidx[ii], vidx[jj], dd)
    ]
    seconds["pairs"] = time.perf_counter() - t0

    split_names = sorted(set(splits))
    split_idx = {sp: vidx[np.array([splits[i] == sp for i in vidx], dtype=bool)] for sp in split_names}
    has_twin_in: dict[tuple[str, str], set[int]] = defaultdict(set)
    for p in pairs:
        has_twin_in[(p.split_a, p.split_b)].add(p.a)
        has_twin_in[(p.split_b, p.split_a)].add(p.b)
    within_split = {}
    for sp in split_names:
        n_sp = sum(1 for x in splits if x == sp)
        in_pairs = [p for p in pairs if p.split_a == sp and p.split_b == sp]
        n_with = len(has_twin_in[(sp, sp)])
        within_split[sp] = {
            "images": n_sp,
            "pairs": len(in_pairs),
            "images_with_twin": n_with,
            "share": round(n_with / n_sp, 4) if n_sp else 0.0,
            "label_conflicts": sum(p.label_a != p.label_b for p in in_pairs),
        }
        if n_with:
            where = "the dataset" if sp == NO_SPLIT else sp
            findings.append(
                f"{'dataset' if sp == NO_SPLIT else sp}: {n_with} of {n_sp} images ({100 * n_with / n_sp:.1f}%) "
                f"have a near duplicate within {where} (pHash Hamming <= {hamming})"
            )
    n_conflicts = sum(v["label_conflicts"] for v in within_split.values())
    if n_conflicts:
        findings.append(f"{n_conflicts} near-duplicate pair(s) within a split carry different labels")
    cross_split = {}
    for a in split_names:
        for b in split_names:
            if a == b:
                continue
            n_a = sum(1 for x in splits if x == a)
            n_with = len(has_twin_in[(a, b)])
            conflicts = sum(p.label_a != p.label_b for p in pairs if {p.split_a, p.split_b} == {a, b})
            cross_split[f"{a}->{b}"] = {
                "images": n_a,
                "images_with_twin": n_with,
                "share": round(n_with / n_a, 4) if n_a else 0.0,
                "label_conflicts": conflicts,
            }
    test_splits = [sp for sp in split_names if _role(sp) == "test"]
    train_splits = [sp for sp in split_names if _role(sp) == "train"]
    near_twins_testing = {keys[i] for a in test_splits for b in train_splits for i in has_twin_in[(a, b)]}
    twin_share = {}
    if test_splits and train_splits:
        te = np.concatenate([split_idx[a] for a in test_splits])
        tr = np.concatenate([split_idx[b] for b in train_splits])
        nearest = nearest_distance(hashes[te], hashes[tr], within=max(SENSITIVITY_THRESHOLDS))
        n_test = sum(1 for x in splits if x in test_splits)
        twin_share = {t: round(float((nearest <= t).sum() / n_test), 4) for t in SENSITIVITY_THRESHOLDS}
        n = len(near_twins_testing)
        conflicts = sum(p.label_a != p.label_b for p in pairs if {_role(p.split_a), _role(p.split_b)} == {"test", "train"})
        findings.insert(
            0,
            f"leakage: {n} of {n_test} Testing images ({100 * n / n_test:.1f}%) have a near twin in Training "
            f"(pHash Hamming <= {hamming}; exact copies: {100 * twin_share[0]:.1f}%); "
            f"score models on the {n_test - n} without one",
        )
        if conflicts:
            findings.append(f"{conflicts} Testing/Training near-twin pair(s) carry different labels")

    patients = _patient_summary(ds, pairs, findings)
    simulated = None
    if simulate_split is not None:
        simulated = _simulate_split(ds, hashes, valid, hamming, simulate_split, val_fraction, seed, findings)
    return DatasetReport(
        root=ds.root, kind=ds.kind, n_samples=len(samples), classes=list(ds.classes), hamming=hamming,
        counts={sp: dict(v) for sp, v in counts.items()},
        sizes={c: dict(v.most_common()) for c, v in sizes.items()},
        channels={c: dict(v) for c, v in channels.items()},
        colour_files=dict(colour), intensity=intensity, skipped=skipped, blank=blank, pairs=pairs,
        near_twins_testing=near_twins_testing, cross_split=cross_split, within_split=within_split,
        twin_share_by_threshold=twin_share, patients=patients, simulated_split=simulated,
        findings=findings, seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def _patient_summary(ds: SampleSet, pairs: list[DuplicatePair], findings: list[str]) -> dict:
    from tumorlens.data.splits import split_patient_overlap

    with_pid = [s.patient_id for s in ds.samples if s.patient_id is not None]
    if not with_pid:
        return {"n_patients": 0}
    pid = [s.patient_id for s in ds.samples]
    same = sum(1 for p in pairs if pid[p.a] is not None and pid[p.a] == pid[p.b])
    shared = split_patient_overlap(ds)
    out = {
        "n_patients": len(set(with_pid)),
        "slices_with_patient_id": len(with_pid),
        "duplicate_pairs_same_patient": same,
        "duplicate_pairs_other_patient": len(pairs) - same,
        "patients_in_several_splits": len(shared),
    }
    if same:
        findings.append(
            f"patients: {same} of {len(pairs)} near-duplicate pairs are slices of one patient; "
            "split by patient (tumorlens' default when patient ids exist), never by slice"
        )
    if shared:
        findings.append(f"leakage: {len(shared)} patient(s) have slices in more than one split")
    return out


def _simulate_split(ds, hashes, valid, hamming, how, val_fraction, seed, findings) -> dict:
    """Split the training part as a user would, and measure what the validation side leaks."""
    import warnings

    from tumorlens.data.splits import patient_group_split, stratified_split

    pool = [i for i, s in enumerate(ds.samples) if _role(s.split) in ("train", None)]
    sub = ds.subset(pool)
    if how == "slice" and sub.has_patients():
        findings.append(
            "warning: a slice-level split was requested on a dataset with patient ids: slices of one "
            "patient land on both sides; use a patient split"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr, va = (stratified_split if how == "slice" else patient_group_split)(sub, val_fraction, seed)
    tr, va = np.asarray(pool)[tr], np.asarray(pool)[va]
    tr_v, va_v = tr[valid[tr]], va[valid[va]]
    nearest = nearest_distance(hashes[va_v], hashes[tr_v], within=hamming)
    n_twin = int((nearest <= hamming).sum())
    pid = [s.patient_id for s in ds.samples]
    shared = len({pid[i] for i in va if pid[i] is not None} & {pid[i] for i in tr if pid[i] is not None})
    out = {
        "how": how,
        "val_fraction": val_fraction,
        "seed": seed,
        "train": len(tr),
        "val": len(va),
        "val_with_twin_in_train": n_twin,
        "share": round(n_twin / len(va), 4) if len(va) else 0.0,
        "patients_on_both_sides": shared,
    }
    findings.append(
        f"simulated {how} split: {n_twin} of {len(va)} validation images ({100 * out['share']:.1f}%) have a near "
        f"twin in its training side; {shared} patient(s) on both sides"
    )
    return out
