"""`train(config)`: data -> split -> Lightning fit -> temperature scaling -> one checkpoint file."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, WeightedRandomSampler

from tumorlens.version import __version__ as tumorlens_version
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet
from tumorlens.data.splits import paths_digest
from tumorlens.errors import TumorlensError
from tumorlens.evaluation.calibration import fit_temperature
from tumorlens.evaluation.metrics import classification_metrics
from tumorlens.models.checkpoint import save_checkpoint
from tumorlens.models.registry import build_model
from tumorlens.models.softmax import temperature_softmax
from tumorlens.training.acquisition import Acquisition
from tumorlens.training.augment import augment_preset, make_augment
from tumorlens.training.augment_presets import PER_IMAGE_PRESETS
from tumorlens.training.curves import read_log, save_curves
from tumorlens.training.distill import DistillationLoss, check_distill, teacher_targets
from tumorlens.training.datasets import AugmentedImageDataset, TensorImageDataset, prepare_per_image, preprocess_all
from tumorlens.training.losses import balanced_class_weights, make_loss
from tumorlens.training.module import Classifier
from tumorlens.training.outside import OutsideBrain, check_outside_mode
from tumorlens.training.tumor_removal import (
    TumorRemoval, check_removal_p, training_tumor_masks, tumor_free_class, undo_removal_label_shift,
)


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "efficientnet_lite0"
    pretrained: str | None = None
    size: int = 224  # the shipped model's size; see benchmarks/RESULTS.md for 160 vs 224
    crop_to_head: bool = False
    intensity: str = "minmax"  # the recipe's intensity standardisation (tumorlens.data.preprocess.INTENSITY_METHODS)
    clip_low: float = 1.0  # intensity percentiles of the preprocessing recipe
    clip_high: float = 99.0
    split: str | None = None  # train only on samples of this split (e.g. "Training"); None = all
    val_fraction: float = 0.15
    epochs: int = 10
    max_steps: int = -1
    max_val_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    loss: str = "ce"
    class_weights: bool = True
    weighted_sampling: bool = False
    label_smoothing: float = 0.05
    focal_gamma: float = 2.0
    augment: str = "mri"  # none, flip, mri or acquisition (tumorlens.training.augment_presets)
    # outside-brain randomisation during training (tumorlens.training.outside): keep, randomize, blank
    outside_brain: str = "keep"
    outside_p: float = 0.5
    # tumor-removed counterfactual examples (tumorlens.training.tumor_removal): the share of tumor
    # images whose tumor is removed and which are relabelled as the tumor-free class; 0 = off
    tumor_removal_p: float = 0.0
    segmenter: str | None = None  # its masks where a slice has no expert mask; None = the bundled one
    # distillation across the intervention (training/distill.py): a model file whose soft predictions on
    # the clean training slices the student learns from its edited views; None = off
    teacher: str | None = None
    distill_weight: float = 0.5  # share of the soft term in the loss
    distill_temperature: float = 2.0
    patience: int = 4
    seed: int = 0
    # draws the validation split; None: the same as seed. Fix it to compare seeds on one validation set.
    split_seed: int | None = None
    # a set without patient ids: "near-duplicates" keeps each group of near-twin slices (the data
    # check's perceptual hashes and threshold) on one side of the split; "none" splits by slice, as
    # runs before issue 27 did (a near twin of a training slice beside 4 in 10 validation slices)
    val_grouping: str = "near-duplicates"
    devices: int | str = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    resume: str | None = None
    # a --resume file that holds pickled Python objects (Lightning keeps hyperparameters that way)
    # loads only when the user says they trust it: unpickling runs code
    trust_code: bool = False
    channels_last: bool = True
    class_map: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict
    temperature: float
    seconds: float


def train(config: TrainConfig, samples: SampleSet | None = None) -> TrainResult:
    from tumorlens.data.sources import open_dataset

    started = time.time()
    augment_preset(config.augment)  # an unknown name fails before any data is read
    check_outside_mode(config.outside_brain)
    if not 0 <= config.outside_p <= 1:
        raise TumorlensError(f"--outside-p must lie in [0, 1], got {config.outside_p}")
    check_removal_p(config.tumor_removal_p)
    if config.teacher:
        check_distill(config.distill_weight, config.distill_temperature)
        if not Path(config.teacher).is_file():
            raise TumorlensError(f"no teacher model at {config.teacher} (--teacher)")
    if config.val_grouping not in VAL_GROUPINGS:
        raise TumorlensError(f"--val-grouping must be one of {', '.join(VAL_GROUPINGS)}, got {config.val_grouping!r}")
    # so does a missing or damaged --resume file; its schedule length is checked once the run's is known
    resumed_total_steps = _resume_schedule_length(config.resume, config.trust_code) if config.resume else None
    L.seed_everything(config.seed, workers=True)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    if samples is None:
        samples = open_dataset(config.data, class_map=config.class_map or None)
    if config.split is not None:
        available = sorted({s.split for s in samples.samples if s.split})
        if config.split not in available:
            raise TumorlensError(f"{config.data} has no split {config.split!r}; it has {available or 'no splits'}")
        samples = samples.by_split(config.split)
    if len(samples) == 0:
        raise TumorlensError(f"no labelled samples to train on in {config.data}")
    if any(s.label is None for s in samples.samples):
        raise TumorlensError(f"{config.data}: every training sample needs a label (class folder or metadata)")

    split_seed = config.seed if config.split_seed is None else config.split_seed
    # perceptual hashes of every image: they group near twins for the split, and the checkpoint keeps
    # them so an audit can find near twins of its test images without the training data
    hashes, valid = _hash_all(samples)
    train_idx, val_idx, split_method, twins = _split(samples, config, split_seed, hashes, valid)
    train_set, val_set = samples.subset(train_idx), samples.subset(val_idx)
    classes = samples.classes
    recipe = PreprocessRecipe(
        size=config.size, crop_to_head=config.crop_to_head, clip_low=config.clip_low, clip_high=config.clip_high,
        intensity=config.intensity,
    )

    if config.tumor_removal_p > 0:
        tumor_free_class(classes)  # a set without a tumor-free class fails before any image is read
        if config.segmenter and not Path(config.segmenter).is_file():
            raise TumorlensError(f"no segmenter at {config.segmenter} (--segmenter); leave it out to use the bundled one")
    y_train, y_val = train_set.label_indices(), val_set.label_indices()
    train_ds, removal_masks = _training_dataset(config, train_set, y_train, recipe, classes)
    if config.teacher:
        train_ds.soft = teacher_targets(config.teacher, train_set, classes, config.distill_temperature)
    x_val = preprocess_all(val_set, recipe, "preprocessing validation images")

    background = float(recipe.normalize(np.zeros(1))[0])
    val_ds = TensorImageDataset(x_val, y_val)
    sampler = None
    if config.weighted_sampling:
        counts = np.bincount(y_train, minlength=len(classes)).astype(float)
        sampler = WeightedRandomSampler(1.0 / counts[y_train], num_samples=len(y_train), replacement=True)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_ds, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler, generator=generator, drop_last=len(train_ds) > config.batch_size
    )
    val_loader = DataLoader(val_ds, batch_size=max(config.batch_size, 64))

    weights = balanced_class_weights(y_train, len(classes)) if config.class_weights else None
    loss = make_loss(config.loss, weights, config.label_smoothing, config.focal_gamma)
    if config.teacher:
        loss = DistillationLoss(loss, config.distill_weight, config.distill_temperature)
    net = build_model(config.model, len(classes), pretrained=config.pretrained)
    module = Classifier(
        net, loss, len(classes), lr=config.lr, weight_decay=config.weight_decay,
        optimizer=config.optimizer, channels_last=config.channels_last,
        augment=make_augment(config.augment, fill=background), resumed_total_steps=resumed_total_steps,
    )

    best = ModelCheckpoint(dirpath=out / "lightning", filename="best", monitor="val_macro_f1", mode="max")
    # The latest epoch, for --resume. Not save_last=True on `best`: Lightning then copies a checkpoint
    # only when validation improved, so last.ckpt was the best epoch and a resumed run repeated epochs.
    latest = ModelCheckpoint(dirpath=out / "lightning", filename="last", save_top_k=1, enable_version_counter=False)
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        limit_val_batches=config.max_val_steps if config.max_val_steps else 1.0,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        deterministic="warn",
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[
            best,
            latest,
            # strict=False: a --max-steps run may stop before the first validation; that is not an error.
            EarlyStopping(monitor="val_macro_f1", mode="max", patience=config.patience, strict=False),
            TQDMProgressBar(refresh_rate=10),
        ],
        log_every_n_steps=10,
        enable_model_summary=False,
    )
    log_csv = out / "logs" / "metrics.csv"
    earlier_log = read_log(log_csv) if config.resume else None
    trainer.fit(module, train_loader, val_loader, ckpt_path=config.resume)

    if best.best_model_path:
        # weights_only=False is safe here: this run wrote the file moments ago.
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    net = module.net.to(memory_format=torch.contiguous_format).eval()
    label_shift = None
    if removal_masks is not None:
        label_shift = undo_removal_label_shift(net, config.model, classes, np.bincount(y_train, minlength=len(classes)),
                                               removal_masks["with_tumor_by_class"], config.tumor_removal_p)

    with torch.inference_mode():
        val_logits = torch.cat([net(x) for x, _ in DataLoader(val_ds, batch_size=128)]).numpy()
    temperature = fit_temperature(val_logits, y_val)
    val_probs = temperature_softmax(val_logits, temperature)
    val_metrics = classification_metrics(y_val, val_probs, classes)
    val_metrics["ece_uncalibrated"] = classification_metrics(
        y_val, temperature_softmax(val_logits), classes
    )["ece"]

    seconds = time.time() - started
    provenance = {
        "data": str(Path(config.data).resolve()),
        "data_kind": samples.kind,
        "train_split": config.split,
        "split_method": split_method,
        "n_train": len(train_set),
        "n_val": len(val_set),
        # validation slices with a near twin (the data check's threshold) among the training slices
        "val_with_twin_in_train": twins,
        "val_paths_sha": paths_digest(val_set),
        # perceptual hashes of every image the model saw (train + validation), so an audit can find
        # near twins of its test images anywhere, without the training data on the machine
        "train_phash": [f"{int(h):016x}" for h in hashes[valid]],
        "skipped_files": len(samples.skipped),
        "tumor_removal_masks": removal_masks,
        "tumor_removal_logit_shift": label_shift,
        "config": asdict(config),
        "epochs_run": trainer.current_epoch,
        "train_seconds": round(seconds, 1),
        "versions": {
            "tumorlens": tumorlens_version,
            "torch": str(torch.__version__),
            "lightning": L.__version__,
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ckpt = save_checkpoint(
        out / "model.pt", net, config.model, classes, recipe, temperature=temperature,
        provenance=provenance, metrics={"validation": val_metrics},
    )
    save_curves(log_csv, out, earlier=earlier_log)
    (out / "validation_metrics.json").write_text(json.dumps(val_metrics, indent=2))
    return TrainResult(ckpt, val_metrics, temperature, seconds)


def _training_dataset(config: TrainConfig, train_set: SampleSet, y_train: np.ndarray, recipe: PreprocessRecipe,
                      classes: list[str]):
    """Preprocessed once into a tensor, unless an option edits images one by one as they are drawn.
    Returns the dataset and, with tumor removal, where its masks came from (else None)."""
    preset = augment_preset(config.augment)
    acquisition = preset in PER_IMAGE_PRESETS
    outside = config.outside_brain != "keep" and config.outside_p > 0
    removing = config.tumor_removal_p > 0
    if not (acquisition or outside or removing):
        return TensorImageDataset(preprocess_all(train_set, recipe, "preprocessing training images"), y_train), None
    base, brains, fills = prepare_per_image(train_set, recipe, acquisition, outside or removing)
    removal, mask_counts = None, None
    if removing:
        target = tumor_free_class(classes)
        from tumorlens.segment.model import load_segmenter

        segmenter = load_segmenter(config.segmenter) if config.segmenter else None
        masks, mask_counts = training_tumor_masks(train_set, recipe, y_train, target, segmenter)
        removal = TumorRemoval(masks, brains, target, config.tumor_removal_p, np.random.default_rng(config.seed + 1))
    # with acquisition augmentation base holds the images before the intensity step: a swapped-in
    # outside is then standardised when drawn, instead of keeping a second copy of every image
    donors = (lambda j: recipe.standardise(base[j].astype(np.float32))) if acquisition else base
    randomiser = (OutsideBrain(config.outside_brain, config.outside_p, brains, fills, donors,
                               np.random.default_rng(config.seed)) if outside else None)
    return AugmentedImageDataset(base, y_train, recipe,
                                 acquisition=Acquisition(recipe, window=preset == "acquisition_window") if acquisition else None,
                                 outside=randomiser, removal=removal), mask_counts


VAL_GROUPINGS = ("near-duplicates", "none")


def _hash_all(samples: SampleSet) -> tuple[np.ndarray, np.ndarray]:
    from tumorlens.data.checks import hash_samples

    return hash_samples(samples.samples, progress=True)


def _split(samples: SampleSet, config: TrainConfig, seed: int, hashes: np.ndarray | None, valid: np.ndarray | None):
    """(train, val, how it was split, validation slices with a near twin in training; None without hashes)."""
    from tumorlens.data.checks import DEFAULT_HAMMING, nearest_distance
    from tumorlens.data.splits import stratified_split, train_val_split

    if config.val_grouping == "none" and not samples.has_patients():
        train, val = stratified_split(samples, val_fraction=config.val_fraction, seed=seed)
        how = "stratified"
    else:
        train, val, how = train_val_split(samples, config.val_fraction, seed, hashes, valid, DEFAULT_HAMMING)
    if hashes is None:
        return train, val, how, None
    tr, va = train[valid[train]], val[valid[val]]
    twins = int((nearest_distance(hashes[va], hashes[tr], within=DEFAULT_HAMMING) <= DEFAULT_HAMMING).sum()) if len(tr) and len(va) else 0
    return train, val, how, twins


def _resume_schedule_length(path: str, trust_code: bool = False) -> int | None:
    """The one-cycle length stored in a --resume file; a missing or damaged file, or one holding
    pickled code without --trust-code, is a one-line error, before any data is read."""
    import pickle

    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint to resume from at {path}")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not trust_code:
                raise TumorlensError(f"cannot resume from {path} without --trust-code: it holds pickled Python "
                                     "objects, and loading it runs code; pass --trust-code if this run is yours") from None
            state = torch.load(path, map_location="cpu", weights_only=False)
    except TumorlensError:
        raise
    except Exception as exc:  # torch raises several types for a damaged file
        raise TumorlensError(f"cannot resume from {path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "optimizer_states" not in state:
        raise TumorlensError(f"cannot resume from {path}: not a training checkpoint (use OUT/lightning/last.ckpt)")
    return (state.get("lr_schedulers") or [{}])[0].get("total_steps")
