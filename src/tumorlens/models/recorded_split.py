"""A model's own validation slices, redrawn from what its training run recorded (provenance: the data
folder, its split, the val fraction and split seed, the split's name and a digest of its paths).

The monitoring reference (serve/reference.py) and the benchmarks that score a checkpoint on its
validation data need the same slices training validated on; this is the one place that rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tumorlens.data.sample import SampleSet
from tumorlens.data.splits import needs_hashes, paths_digest, split_by_name


def recorded_validation(provenance: dict, samples: SampleSet, roots: Iterable[str] = (),
                        progress: bool = True) -> tuple[SampleSet, bool] | None:
    """(the validation slices among `samples`, whether their paths match the digest training recorded),
    or None when the provenance names no validation split of these data (another dataset, an
    unknown split name, a run without a val fraction).

    `roots`: more names the data folder may have had in training's paths (the digest is of the paths
    as training named them); the dataset's own root and the configured folder, made absolute from
    this working folder, are always tried."""
    cfg = provenance.get("config") or {}
    split, fraction, how = provenance.get("train_split"), cfg.get("val_fraction"), provenance.get("split_method", "")
    if not (split and fraction) or Path(str(provenance.get("data", ""))).name != Path(samples.root).name:
        return None
    part = samples.by_split(split)
    if len(part) == 0:
        return None
    hashes = valid = None
    if needs_hashes(how):
        from tumorlens.data.checks import hash_samples

        hashes, valid = hash_samples(part.samples, progress=progress)
    drawn = split_by_name(part, how, fraction, _split_seed(cfg), hashes, valid)
    if drawn is None:
        return None
    val = part.subset(drawn[1])
    names = {None, samples.root, str(Path(cfg.get("data") or samples.root).absolute()), *roots}
    return val, provenance.get("val_paths_sha") in {paths_digest(val, root) for root in names}


def describe_recorded_split(provenance: dict) -> str:
    """E.g. "Training, near-duplicate-grouped (Hamming <= 2), val fraction 0.1, seed 0"."""
    cfg = provenance.get("config") or {}
    return (f"{provenance.get('train_split')}, {provenance.get('split_method')}, "
            f"val fraction {cfg.get('val_fraction')}, seed {_split_seed(cfg)}")


def _split_seed(cfg: dict) -> int:
    # training draws its split with --split-seed, or with --seed when that is not given
    return cfg.get("seed", 0) if cfg.get("split_seed") is None else cfg["split_seed"]
