"""`tumorlens train-segmenter`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumorlens.cli_errors import exit_on_user_error


def register(app: typer.Typer) -> None:
    @app.command("train-segmenter")
    def train_segmenter(
        data: Path = typer.Option(..., "--data", help="slices with expert tumor masks (a figshare folder or .mat files)"),
        out: Path = typer.Option(Path("runs/segmenter"), "--out", help="output folder: segmenter.pt, logs, validation figures"),
        size: int = typer.Option(128, "--size", help="model input size in pixels"),
        epochs: int = typer.Option(8, "--epochs"),
        batch_size: int = typer.Option(16, "--batch-size"),
        lr: float = typer.Option(2e-3, "--lr"),
        weight_decay: float = typer.Option(1e-4, "--weight-decay"),
        encoder: str = typer.Option("tf_efficientnet_lite0", "--encoder", help="timm encoder (Lite0/1/2 have ImageNet weights here)"),
        pretrained: Optional[str] = typer.Option("imagenet", "--pretrained", help="'imagenet' or 'none'"),
        exclude_patients: Optional[Path] = typer.Option(None, "--exclude-patients", help="CSV with a pid column: never trained on (e.g. the held-out patients)"),
        folds: int = typer.Option(5, "--folds", help="patient-level folds"),
        fold: Optional[int] = typer.Option(None, "--fold", help="validate on this fold; without it, train on every allowed patient"),
        cv_seed: int = typer.Option(0, "--cv-seed"),
        negatives: Optional[Path] = typer.Option(None, "--negatives", help="a folder of tumor-free slices to train on with empty masks"),
        max_negatives: int = typer.Option(600, "--max-negatives", help="at most this many of them (seeded choice; the rest stay unseen)"),
        threshold: float = typer.Option(0.5, "--threshold", help="tumor probability threshold"),
        min_area: float = typer.Option(0.002, "--min-area", help="drop predicted components smaller than this share of the slice"),
        augment: bool = typer.Option(True, "--augment/--no-augment"),
        dice: str = typer.Option("batch", "--dice", help="Dice term of the loss: 'batch' (one Dice over the batch, smp DiceLoss) or 'image' (one Dice per tumor slice, averaged: small tumors count as much as large ones)"),
        seed: int = typer.Option(0, "--seed"),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
        max_steps: int = typer.Option(-1, "--max-steps", help="stop after this many optimiser steps (-1: no limit)"),
    ) -> None:
        """Train a tumor segmenter (U-Net, pretrained EfficientNet-Lite encoder); writes OUT/segmenter.pt."""
        from tumorlens.training.segmentation import SegTrainConfig, train_segmenter as run

        config = SegTrainConfig(
            data=str(data), out=str(out), size=size, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, encoder=encoder, pretrained=None if pretrained in (None, "none") else pretrained,
            exclude_patients=str(exclude_patients) if exclude_patients else None, folds=folds, fold=fold,
            cv_seed=cv_seed, negatives=str(negatives) if negatives else None, max_negatives=max_negatives,
            threshold=threshold, min_area=min_area, augment=augment, dice=dice, seed=seed, threads=threads, max_steps=max_steps,
        )
        with exit_on_user_error():
            result = run(config)
        v = result.metrics.get("validation")
        extra = f"  validation Dice {v['dice_mean']:.4f} (fold {v['fold']})" if v else ""
        typer.echo(f"saved {result.checkpoint}{extra}  {result.seconds / 60:.1f} min")
