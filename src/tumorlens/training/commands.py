"""`tumorlens train`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumorlens.cli_errors import exit_on_user_error
from tumorlens.data.preprocess import INTENSITY_METHODS
from tumorlens.training.augment_presets import AUGMENT_PRESETS
from tumorlens.training.outside import OUTSIDE_MODES


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        data: Path = typer.Option(..., "--data", help="dataset folder (class folders, figshare, DICOM, NIfTI)"),
        out: Path = typer.Option(Path("runs/train"), "--out", help="output folder: model.pt, curves, logs"),
        model: str = typer.Option("efficientnet_lite0", "--model", help="architecture name"),
        pretrained: Optional[str] = typer.Option(None, "--pretrained", help="'imagenet' (EfficientNet-Lite0, -Lite1, -Lite2) or a local weights file"),
        size: int = typer.Option(224, "--size", help="model input size in pixels (the default model's 224; 160 trains about 2x faster, less accurately)"),
        crop_to_head: bool = typer.Option(False, "--crop-to-head/--no-crop-to-head"),
        clip_low: float = typer.Option(1.0, "--clip-low", help="intensity percentile mapped to 0"),
        clip_high: float = typer.Option(99.0, "--clip-high", help="intensity percentile mapped to 1 (100: no clipping)"),
        intensity: str = typer.Option("minmax", "--intensity", help="intensity standardisation, stored in the recipe: " + "; ".join(f"{k}: {v}" for k, v in INTENSITY_METHODS.items())),
        outside_brain: str = typer.Option("keep", "--outside-brain", help="training only, on the audit's brain region: " + "; ".join(f"{k}: {v}" for k, v in OUTSIDE_MODES.items())),
        outside_p: float = typer.Option(0.5, "--outside-p", help="share of training images whose outside-brain pixels --outside-brain replaces"),
        tumor_removal_p: float = typer.Option(0.0, "--tumor-removal-p", help="training only: share of tumor images whose tumor (expert mask, else the segmenter's) is replaced by the mirrored other hemisphere and relabelled as the tumor-free class (the audit measures with another removal, Navier-Stokes inpainting); 0 = off"),
        segmenter: Optional[Path] = typer.Option(None, "--segmenter", help="segmenter checkpoint for --tumor-removal-p's masks where a slice has no expert mask (default: the bundled one)"),
        teacher: Optional[Path] = typer.Option(None, "--teacher", help="distil from this model (any format tumorlens loads): the student learns its soft predictions on the clean slices from the edited views (outside randomised, tumor removed, acquisition shifted); tumor-removed views keep the tumor-free class"),
        distill_weight: float = typer.Option(0.5, "--distill-weight", help="with --teacher: share of the teacher's soft targets in the loss"),
        distill_temperature: float = typer.Option(2.0, "--distill-temperature", help="with --teacher: softening temperature"),
        split: Optional[str] = typer.Option(None, "--split", help="train on this split only, e.g. Training"),
        val_grouping: str = typer.Option("near-duplicates", "--val-grouping", help="a set without patient ids: near-duplicates (each group of near-twin slices on one side of the split) or none (by slice, as before)"),
        val_fraction: float = typer.Option(0.15, "--val-fraction"),
        epochs: int = typer.Option(10, "--epochs"),
        max_steps: int = typer.Option(-1, "--max-steps", help="stop after this many optimiser steps (-1: no limit)"),
        max_val_steps: Optional[int] = typer.Option(None, "--max-val-steps", help="validation batches per epoch"),
        batch_size: int = typer.Option(32, "--batch-size"),
        lr: float = typer.Option(1e-3, "--lr"),
        weight_decay: float = typer.Option(1e-4, "--weight-decay"),
        optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or adam"),
        loss: str = typer.Option("ce", "--loss", help="ce or focal"),
        class_weights: bool = typer.Option(True, "--class-weights/--no-class-weights"),
        weighted_sampling: bool = typer.Option(False, "--weighted-sampling/--no-weighted-sampling"),
        label_smoothing: float = typer.Option(0.05, "--label-smoothing"),
        augment: str = typer.Option("mri", "--augment", help="; ".join(f"{name}: {what}" for name, what in AUGMENT_PRESETS.items())),
        patience: int = typer.Option(4, "--patience", help="early stopping on validation macro-F1"),
        seed: int = typer.Option(0, "--seed"),
        split_seed: Optional[int] = typer.Option(None, "--split-seed", help="seed of the validation split (default: --seed); fix it to compare seeds on one validation set"),
        devices: str = typer.Option("1", "--devices"),
        num_nodes: int = typer.Option(1, "--num-nodes"),
        resume: Optional[Path] = typer.Option(None, "--resume", help="continue an interrupted run from its OUT/lightning/last.ckpt (same data and settings)"),
        class_map: Optional[str] = typer.Option(None, "--class-map", help="rename classes: folder=class,..."),
        trust_code: bool = typer.Option(False, "--trust-code", help="with --resume: allow a checkpoint holding "
                                        "pickled Python objects (loading it runs code; only for your own runs)"),
    ) -> None:
        """Train a classifier; writes OUT/model.pt (weights, recipe, classes, provenance, metrics)."""
        from tumorlens.data.sources import parse_class_map
        from tumorlens.training.trainer import TrainConfig, train as run_train

        with exit_on_user_error():
            class_map_dict = parse_class_map(class_map)
        config = TrainConfig(
            data=str(data), out=str(out), model=model, pretrained=pretrained, size=size, crop_to_head=crop_to_head,
            clip_low=clip_low, clip_high=clip_high, intensity=intensity, outside_brain=outside_brain, outside_p=outside_p,
            tumor_removal_p=tumor_removal_p, segmenter=str(segmenter) if segmenter else None,
            teacher=str(teacher) if teacher else None, distill_weight=distill_weight, distill_temperature=distill_temperature,
            val_grouping=val_grouping, split=split, val_fraction=val_fraction, epochs=epochs, max_steps=max_steps, max_val_steps=max_val_steps,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer, loss=loss,
            class_weights=class_weights, weighted_sampling=weighted_sampling, label_smoothing=label_smoothing,
            augment=augment, patience=patience, seed=seed, split_seed=split_seed, devices=int(devices) if devices.isdigit() else devices,
            num_nodes=num_nodes, resume=str(resume) if resume else None, class_map=class_map_dict,
            trust_code=trust_code,
        )
        with exit_on_user_error():
            result = run_train(config)
        m = result.metrics
        typer.echo(
            f"saved {result.checkpoint}  validation accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
            f"ECE {m['ece']:.4f} (T={result.temperature:.2f})  {result.seconds / 60:.1f} min"
        )
