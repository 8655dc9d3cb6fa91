"""Leakage: which evaluated images have a near twin in the data a model learned from.

One place for what `tumorlens evaluate` and `tumorlens audit` both report: near twins across the
dataset's own Training/Testing splits (perceptual hashes, data.checks), and near twins in the
model's own training data (hashes stored in the checkpoint, or the folder its provenance names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorlens.data.checks import DatasetReport, sample_key
from tumorlens.data.sample import SampleSet
from tumorlens.models.checkpoint import TumorModel

NO_TRAINING_SPLIT_NOTE = ("the dataset has no Training split, so leakage between training and test images cannot be "
                          "checked here; audit the dataset's root folder (with Training/ and Testing/) to check it")


def has_training_split(samples: SampleSet) -> bool:
    return any(s.split == "Training" for s in samples.samples)


def split_twin_mask(report: DatasetReport, evaluated: SampleSet) -> np.ndarray:
    """True for evaluated samples with a near twin in the dataset's Training split."""
    twins = report.near_twins_testing
    return np.array([sample_key(s) in twins for s in evaluated.samples], bool)


def leakage_free_mask(samples: SampleSet, evaluated: SampleSet, report: DatasetReport | None = None,
                      progress: bool = True) -> np.ndarray | None:
    """True for evaluated samples with no near twin in Training; None when there is no Training
    split, or when only Training images are evaluated."""
    if not has_training_split(samples) or not any(s.split != "Training" for s in evaluated.samples):
        return None
    if report is None:
        from tumorlens.data.checks import check_dataset

        report = check_dataset(samples, progress=progress)
    return ~split_twin_mask(report, evaluated)


def model_training_twins(model: TumorModel, samples: SampleSet, audited: SampleSet, training_data: str | None,
                         progress: bool = True) -> tuple[np.ndarray | None, dict]:
    """Audited images with a near twin in the data the model was trained on.

    Sources, in order: perceptual hashes stored in the checkpoint (provenance["train_phash"], hex
    strings, if the trainer saved them: no data needed); else the training folder and split the
    provenance names, when it is on this machine and is not the audited dataset itself (whose own
    splits the dataset check already compares). This is what catches, e.g., figshare slices that a
    model trained on the Kaggle set (which contains many of them) has already seen.
    training_data: "auto" (stored hashes, else the named folder), "stored" (stored hashes only:
    fast, used by --demo), "none", or a folder path.
    """
    from tumorlens.data.checks import DEFAULT_HAMMING, hash_samples, nearest_distance

    prov = model.provenance or {}
    info: dict = {"path": None, "split": None, "checked": False, "note": ""}
    if training_data in (None, "none"):
        info["note"] = "not checked (--training-data none)"
        return None, info
    stored = prov.get("train_phash")
    hb = None
    if stored and training_data in ("auto", "stored"):
        hb = np.array([int(h, 16) for h in stored], np.uint64)
        info.update(path=prov.get("data"), split=prov.get("train_split"), source="hashes stored in the checkpoint")
    else:
        if training_data == "stored":
            info["note"] = ("the checkpoint stores no hashes of its training images; give --training-data auto or a "
                            "folder to check them")
            return None, info
        root = prov.get("data") if training_data == "auto" else training_data
        split = prov.get("train_split") if training_data == "auto" else None
        info.update(path=root, split=split, source="training folder")
        if not root:
            info["note"] = "the checkpoint does not name its training data; give --training-data PATH to check it"
            return None, info
        if not Path(root).exists():
            info["note"] = f"the model's training data ({root}) is not on this machine; give --training-data PATH"
            return None, info
        if samples.root and Path(root).resolve() == Path(samples.root).resolve():
            info["note"] = "the audited dataset is the model's training dataset: its Training/Testing check covers this"
            return None, info
        from tumorlens.data.sources import open_dataset

        train = open_dataset(root, progress=progress)
        if split and any(s.split == split for s in train.samples):
            train = train.by_split(split)
        hb, vb = hash_samples(train.samples, progress=progress)
        hb = hb[vb]
    ha, va = hash_samples(audited.samples, progress=progress)
    twin = np.zeros(len(audited), bool)
    if va.any() and len(hb):
        twin[va] = nearest_distance(ha[va], hb, within=DEFAULT_HAMMING) <= DEFAULT_HAMMING
    where = f"{info['path']}{', split ' + info['split'] if info['split'] else ''}"
    info.update(checked=True, n_training_images=len(hb), n_twins=int(twin.sum()), hamming=DEFAULT_HAMMING,
                note=(f"{int(twin.sum())} of {len(audited)} audited images have a near twin in the model's training "
                      f"data ({where}; {len(hb)} images, {info['source']})"))
    return twin, info
