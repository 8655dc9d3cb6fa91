"""The monitoring reference of a model, computed the way the service sees requests: each slice of its
validation data decoded as an upload, checked, answered by the service's Predictor, and reduced to
the features the audit trail keeps (monitoring/features.py).

Which slices: when the model's provenance says it was validated on a split of these data, that
validation split (models/recorded_split.py, confirmed against the stored digest of its paths);
otherwise every slice of the given data (pass the model's own validation data then).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from tumorlens.data.sample import SampleSet
from tumorlens.data.sources import open_dataset
from tumorlens.errors import TumorlensError
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.recorded_split import describe_recorded_split, recorded_validation
from tumorlens.monitoring.features import output_features
from tumorlens.monitoring.reference import ReferenceProfile, profile_from_rows
from tumorlens.serve.decode import DecodedInput, decode_upload
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.predictor import Predictor
from tumorlens.serve.settings import ServeSettings

log = logging.getLogger("tumorlens.serve")


def validation_part(model: TumorModel, samples: SampleSet) -> tuple[SampleSet, str]:
    """The model's validation slices among `samples` when its provenance names them, else all of them;
    and a sentence saying which."""
    name = Path(samples.root).name or "dataset"
    found = recorded_validation(model.provenance or {}, samples)
    if found is None:
        return samples, f"{name}, all {len(samples)} slices"
    part, same = found
    check = "the same paths as at training" if same else \
        "recomputed; its path digest differs from training's (another working folder?)"
    return part, f"{name}, the model's validation split ({describe_recorded_split(model.provenance)}; {check})"


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
