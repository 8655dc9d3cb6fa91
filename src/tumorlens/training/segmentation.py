"""`train_segmenter(config)`: figshare slices with expert masks -> patient-level fold (or all
patients) -> Lightning fit of a U-Net -> one segmenter file, with its validation figures.

The recipe is fixed in advance (epochs, size, learning rate): there is no early stopping or
checkpoint selection on the validation fold, so the fold's Dice is an honest estimate of the
recipe, and the bundled model is the same recipe trained on every allowed patient.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from tumorlens.version import __version__ as tumorlens_version
from tumorlens.errors import TumorlensError
from tumorlens.segment.model import Segmenter, SegmenterArch, build_segmenter, save_segmenter
from tumorlens.data.preprocess import PreprocessRecipe
from tumorlens.data.sample import SampleSet
from tumorlens.training.augment import BatchAugment


@dataclass
class SegTrainConfig:
    data: str
    out: str
    size: int = 128
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    encoder: str = "tf_efficientnet_lite0"
    pretrained: str | None = "imagenet"
    exclude_patients: str | None = None  # CSV with a `pid` column: these patients are never read into training
    folds: int = 5
    fold: int | None = None  # validate on this patient-level fold; None: train on every allowed patient
    cv_seed: int = 0
    negatives: str | None = None  # a folder of tumor-free slices, trained on with empty masks
    max_negatives: int = 600
    threshold: float = 0.5
    min_area: float = 0.002
    augment: bool = True
    dice: str = "batch"  # "batch": smp DiceLoss over the whole batch; "image": soft Dice per slice with a tumor, averaged
    seed: int = 0
    threads: int | None = None
    max_steps: int = -1
    half: bool = True  # store float16 weights (half the file size)


@dataclass
class SegTrainResult:
    checkpoint: Path
    metrics: dict
    seconds: float


def read_patient_list(path: str | Path) -> set[str]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "pid" not in reader.fieldnames:
            raise TumorlensError(f"{path}: expected a CSV with a 'pid' column")
        return {row["pid"].strip() for row in reader if row["pid"].strip()}


class PairedAugment(nn.Module):
    """The classifier's MRI augmentation with the mask moved by the same affine matrices, plus a
    random gamma (the intensity shift the robustness audit applies) on the image only."""

    def __init__(self, recipe: PreprocessRecipe, gamma: tuple[float, float] = (0.5, 2.0), p_gamma: float = 0.5):
        super().__init__()
        self.mean, self.std = recipe.mean, recipe.std
        self.fill = float(recipe.normalize(np.zeros(1))[0])
        self.geometry = BatchAugment(self.fill)
        self.gamma, self.p_gamma = gamma, p_gamma

    def forward(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None):
        theta = self.geometry.draw_theta(x.shape[0], generator)
        x = BatchAugment.warp(x, theta, self.fill)
        mask = (BatchAugment.warp(mask, theta, 0.0) > 0.5).to(mask.dtype)
        x = self._random_gamma(x, generator)
        return self.geometry.jitter(x, generator), mask

    def _random_gamma(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        lo, hi = math.log(self.gamma[0]), math.log(self.gamma[1])
        g = torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator))
        g = torch.where(torch.rand(n, generator=generator) < self.p_gamma, g, torch.ones(n)).view(n, 1, 1, 1)
        x01 = (x * self.std + self.mean).clamp(0, 1)
        return (x01**g - self.mean) / self.std


DICE_MODES = ("batch", "image")


def check_dice_mode(dice: str) -> str:
    if dice not in DICE_MODES:
        raise TumorlensError(f"--dice must be one of {', '.join(DICE_MODES)}, got {dice!r}")
    return dice


def per_image_dice_loss(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - soft Dice of each slice that has a tumor, averaged over those slices (0 when none has).

    smp's binary DiceLoss sums intersection and cardinality over the whole batch, so a large tumor
    outweighs a small one in the same batch and a missed 10 x 10-pixel tumor barely moves the loss;
    here every tumor slice counts equally. Tumor-free slices are left to the cross-entropy term (as
    smp leaves a class with no pixel in the batch out of its Dice)."""
    from segmentation_models_pytorch.losses._functional import soft_dice_score

    n = logits.shape[0]
    prob = torch.sigmoid(logits).reshape(n, -1)
    target = mask.reshape(n, -1).to(prob.dtype)
    has_tumor = target.sum(1) > 0
    if not has_tumor.any():
        return logits.sum() * 0.0
    score = soft_dice_score(prob[has_tumor], target[has_tumor], smooth=0.0, eps=eps, dims=(1,))
    return (1.0 - score).mean()


class SegModule(L.LightningModule):
    """U-Net, Dice + binary cross-entropy (segmentation-models-pytorch's losses), AdamW, one-cycle.

    dice="batch" is smp's DiceLoss (one Dice over the batch); dice="image" averages one Dice per
    tumor slice (per_image_dice_loss), which weighs small tumors as much as large ones."""

    def __init__(self, net: nn.Module, lr: float = 2e-3, weight_decay: float = 1e-4, augment: PairedAugment | None = None,
                 dice: str = "batch"):
        super().__init__()
        import segmentation_models_pytorch as smp

        check_dice_mode(dice)
        self.net = net.to(memory_format=torch.channels_last)
        self.augment = augment
        self.lr, self.weight_decay = lr, weight_decay
        self.dice_mode = dice
        self.dice_loss = smp.losses.DiceLoss("binary", from_logits=True) if dice == "batch" else per_image_dice_loss
        self.bce_loss = smp.losses.SoftBCEWithLogitsLoss()

    def forward(self, x):
        return self.net(x.contiguous(memory_format=torch.channels_last))

    def loss(self, logits, mask):
        return self.dice_loss(logits, mask) + self.bce_loss(logits, mask)

    def training_step(self, batch, _):
        x, mask = batch
        if self.augment is not None:
            x, mask = self.augment(x, mask)
        loss = self.loss(self(x), mask)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        x, mask = batch
        logits = self(x)
        pred = (logits >= 0).float()  # probability >= 0.5
        inter = (pred * mask).sum((1, 2, 3))
        total = pred.sum((1, 2, 3)) + mask.sum((1, 2, 3))
        dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
        self.log("val_loss", self.loss(logits, mask), on_epoch=True, prog_bar=True)
        self.log("val_dice", dice.mean(), on_epoch=True, prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1) + 1
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def preprocess_pairs(samples: SampleSet, recipe: PreprocessRecipe, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (recipe) and masks (the recipe's geometry, nearest) at model size; a missing mask is empty."""
    x = np.empty((len(samples), 1, recipe.size, recipe.size), dtype=np.float32)
    m = np.zeros((len(samples), 1, recipe.size, recipe.size), dtype=np.float32)
    for i, s in enumerate(tqdm(samples.samples, desc=desc, unit="img", leave=False)):
        x[i, 0] = recipe(s.image)
        if s.mask is not None:
            m[i, 0] = recipe.mask(s.mask, s.image)
    return torch.from_numpy(x), torch.from_numpy(m)


def evaluate_samples(segmenter: Segmenter, samples: SampleSet, desc: str = "segmenting", batch_size: int = 32):
    """Predicted masks at each slice's own size vs the expert masks -> (per-slice table, summary)."""
    from tumorlens.segment.metrics import slice_rows, summarize

    preds = []
    for i in tqdm(range(0, len(samples), batch_size), desc=desc, unit="batch", leave=False):
        preds += segmenter.predict([s.image for s in samples.samples[i : i + batch_size]], batch_size)
    df = slice_rows(
        [s.name for s in samples.samples], preds, [s.mask for s in samples.samples],
        [s.label for s in samples.samples], [s.patient_id for s in samples.samples],
    )
    return df, summarize(df)


def _select_negatives(path: str, limit: int, seed: int) -> tuple[SampleSet, list[str]]:
    """Up to `limit` tumor-free slices from a folder (seeded choice); returns them and the paths not chosen."""
    from tumorlens.data.sources import open_dataset

    negs = open_dataset(path, allow_unlabeled=True, progress=False)
    order = np.random.default_rng(seed).permutation(len(negs))
    chosen, rest = np.sort(order[:limit]), np.sort(order[limit:])
    for s in negs.samples:
        s.mask = np.zeros(s.image.shape, dtype=bool)
    return negs.subset(chosen), [negs.samples[i].path for i in rest]


def train_segmenter(config: SegTrainConfig, samples: SampleSet | None = None) -> SegTrainResult:
    from tumorlens.data.sources import open_dataset
    from tumorlens.data.splits import patient_kfold

    started = time.time()
    check_dice_mode(config.dice)  # before minutes of preprocessing
    if config.threads:
        torch.set_num_threads(config.threads)
    L.seed_everything(config.seed, workers=True)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    if samples is None:
        samples = open_dataset(config.data)
    if not samples.has_masks():
        raise TumorlensError(f"{config.data}: every slice needs an expert tumor mask to train a segmenter (figshare has them)")
    excluded: set[str] = set()
    if config.exclude_patients:
        excluded = read_patient_list(config.exclude_patients)
        keep = [i for i, s in enumerate(samples.samples) if s.patient_id not in excluded]
        n_dropped = len(samples) - len(keep)
        samples = samples.subset(keep)
    else:
        n_dropped = 0
    if len(samples) == 0:
        raise TumorlensError("no slices left to train on after --exclude-patients")

    if config.fold is not None:
        if not samples.has_patients():
            raise TumorlensError(f"{config.data}: --fold needs patient ids for a patient-level split")
        if not 0 <= config.fold < config.folds:
            raise TumorlensError(f"--fold must be in 0..{config.folds - 1}, got {config.fold}")
        train_idx, val_idx = patient_kfold(samples, k=config.folds, seed=config.cv_seed)[config.fold]
        train_set, val_set = samples.subset(train_idx), samples.subset(val_idx)
    else:
        train_set, val_set = samples, None

    recipe = PreprocessRecipe(size=config.size)
    x_train, m_train = preprocess_pairs(train_set, recipe, "preprocessing training slices")
    n_train_slices, n_train_patients = len(train_set), len({s.patient_id for s in train_set.samples})
    # The raw slices are no longer needed (only the validation fold is read again): free them before
    # the fit, on a machine where several trainings share the memory.
    del samples, train_set
    negatives_unused: list[str] = []
    n_neg = 0
    if config.negatives:
        negs, negatives_unused = _select_negatives(config.negatives, config.max_negatives, config.seed)
        xn, mn = preprocess_pairs(negs, recipe, "preprocessing tumor-free slices")
        x_train, m_train = torch.cat([x_train, xn]), torch.cat([m_train, mn])
        n_neg = len(negs)
        del negs

    arch = SegmenterArch(encoder=config.encoder)
    net = build_segmenter(arch, pretrained=config.pretrained)
    module = SegModule(net, lr=config.lr, weight_decay=config.weight_decay,
                       augment=PairedAugment(recipe) if config.augment else None, dice=config.dice)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(TensorDataset(x_train, m_train), batch_size=config.batch_size, shuffle=True,
                              generator=generator, drop_last=len(x_train) > config.batch_size)
    val_loader = None
    if val_set is not None:
        x_val, m_val = preprocess_pairs(val_set, recipe, "preprocessing validation slices")
        val_loader = DataLoader(TensorDataset(x_val, m_val), batch_size=32)

    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        accelerator="cpu",
        devices=1,
        deterministic="warn",
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[ModelCheckpoint(dirpath=out / "lightning", filename="last", save_top_k=1, enable_version_counter=False),
                   TQDMProgressBar(refresh_rate=20)],
        log_every_n_steps=10,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if val_loader is not None else 0,
    )
    trainer.fit(module, train_loader, val_loader)
    net = module.net.eval()
    train_seconds = time.time() - started

    segmenter = Segmenter(net=net, arch=arch, recipe=recipe, threshold=config.threshold, min_area=config.min_area)
    metrics: dict = {}
    if val_set is not None:
        df, summary = evaluate_samples(segmenter, val_set, "validating at full resolution")
        df.to_csv(out / "validation_dice.csv", index=False)
        summary["fold"], summary["folds"] = config.fold, config.folds
        metrics["validation"] = summary
        (out / "validation_metrics.json").write_text(json.dumps(summary, indent=2))

    provenance = {
        "data": str(Path(config.data).resolve()),
        "n_train_slices": n_train_slices,
        "n_train_patients": n_train_patients,
        "n_val_slices": len(val_set) if val_set is not None else 0,
        "n_negatives": n_neg,
        "negatives_unused": negatives_unused,  # tumor-free slices left for measuring the false-positive rate
        "excluded_patients": sorted(excluded),
        "excluded_slices": n_dropped,
        "config": asdict(config),
        "epochs_run": trainer.current_epoch,
        "train_seconds": round(train_seconds, 1),
        "versions": {"tumorlens": tumorlens_version, "torch": str(torch.__version__), "lightning": L.__version__,
                     "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ckpt = save_segmenter(out / "segmenter.pt", net, arch, recipe, config.threshold, config.min_area,
                          metrics=metrics, provenance=provenance, half=config.half)
    return SegTrainResult(ckpt, metrics, time.time() - started)
