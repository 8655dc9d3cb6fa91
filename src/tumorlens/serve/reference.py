"""The monitoring reference of a model, computed the way the service sees requests: each slice of its
validation data decoded as an upload, checked, answered by the service's Predictor, and reduced to
the features the audit trail keeps (monitoring/features.py).

Which slices: when the model's provenance says it was validated on a split of these data (the
Training folder, a val fraction and a split seed), that validation split, recomputed with
data.splits.train_val_split and confirmed against the stored digest of its paths; otherwise every
slice of the given data (pass the model's own validation data then).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from tqdm import tqdm

from tumorlens.data.sample import SampleSet
from tumorlens.data.sources import open_dataset
from tumorlens.data.splits import patient_group_split, stratified_split, train_val_split
from tumorlens.errors import TumorlensError
from tumorlens.models.checkpoint import TumorModel
from tumorlens.monitoring.features import output_features
from tumorlens.monitoring.reference import ReferenceProfile, profile_from_rows
from tumorlens.serve.decode import DecodedInput, decode_upload
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.predictor import Predictor
from tumorlens.serve.settings import ServeSettings

log = logging.getLogger("tumorlens.serve")


def _paths_digest(samples: SampleSet, root: str) -> str:
    """As training records its validation split (training/trainer.py): the sorted paths' SHA-256, the
    paths under `root` as training named the data folder (absolute from its working folder)."""
    paths = sorted(root + s.path[len(samples.root):] if s.path.startswith(samples.root) else s.path
                   for s in samples.samples)
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


def _validation_indices(part: SampleSet, how: str, fraction: float, seed: int) -> np.ndarray | None:
    """The validation indices of `part` split as the provenance's split_method says training split it
    (training/trainer.py), or None for a method not known here."""
    if how == "stratified":
        return stratified_split(part, fraction, seed)[1]
    if how == "patient-grouped":
        return patient_group_split(part, fraction, seed)[1]
    grouped = re.fullmatch(r"near-duplicate-grouped \(Hamming <= (\d+)\)", how or "")
    if grouped:
        from tumorlens.data.checks import hash_samples

        hashes, valid = hash_samples(part.samples, progress=True)
        return train_val_split(part, fraction, seed, hashes, valid, int(grouped.group(1)))[1]
    return None


def validation_part(model: TumorModel, samples: SampleSet) -> tuple[SampleSet, str]:
    """The model's validation slices among `samples` when its provenance names them, else all of them;
    and a sentence saying which."""
    p = model.provenance or {}
    cfg = p.get("config") or {}
    split, fraction = p.get("train_split"), cfg.get("val_fraction")
    name = Path(samples.root).name or "dataset"
    seed = cfg.get("split_seed")
    seed = cfg.get("seed", 0) if seed is None else seed
    val = None
    if split and fraction and any(s.split == split for s in samples.samples) \
            and Path(str(p.get("data", ""))).name == name:
        val = _validation_indices(samples.by_split(split), p.get("split_method", ""), fraction, seed)
    if val is not None:
        part = samples.by_split(split).subset(val)
        roots = {samples.root, str(Path(cfg.get("data") or samples.root).absolute())}
        same = p.get("val_paths_sha") in {_paths_digest(part, root) for root in roots}
        check = "the same paths as at training" if same else \
            "recomputed; its path digest differs from training's (another working folder?)"
        return part, (f"{name} {split}, the model's validation split ({p['split_method']}, val fraction {fraction}, "
                      f"seed {seed}; {check})")
    return samples, f"{name}, all {len(samples)} slices"


def profile_samples(predictor: Predictor, samples: SampleSet, source: str, progress: bool = True) -> ReferenceProfile:
    """Every slice through the service's path (decode, input check, model, features)."""
    settings = predictor.settings
    rows, truth = [], []
    for sample in tqdm(samples.samples, desc="monitoring reference", unit="slice", disable=not progress):
        try:
            decoded = decode_upload(Path(sample.path).read_bytes(), settings)
        except (OSError, ServiceError):  # a layout the upload decoder does not read (e.g. .mat): its pixels
            decoded = DecodedInput("array", [sample.image])
        for r in predictor.predict(decoded):
            rows.append({"status": r.status, "predicted_class": r.predicted_class, "confidence": r.confidence,
                         "features": {**(r.features or {}), **output_features(r.probabilities)}})
            truth.append(sample.label)
    return profile_from_rows(rows, predictor.model.classes, source, truth)


def reference_for(model: TumorModel, data: str | Path, predictor: Predictor | None = None,
                  progress: bool = True) -> ReferenceProfile:
    """The reference profile of `model` on `data` (its validation part when the provenance names it)."""
    samples = open_dataset(data, progress=progress)
    part, source = validation_part(model, samples)
    if len(part) == 0:
        raise TumorlensError(f"{data}: no slices to profile for the monitoring reference")
    own = predictor is None
    predictor = predictor or Predictor(model, ServeSettings(segmenter=False, monitoring=True))
    try:
        log.info("monitoring reference: %s", source)
        return profile_samples(predictor, part, source, progress)
    finally:
        if own:
            predictor.close()
