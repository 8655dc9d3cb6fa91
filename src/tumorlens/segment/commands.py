"""`tumorlens segment` (training: tumorlens.training.segment_commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumorlens.cli_errors import exit_on_user_error


def register(app: typer.Typer) -> None:
    @app.command("segment")
    def segment(
        data: Path = typer.Option(..., "--data", help="a dataset folder or one image file"),
        out: Path = typer.Option(Path("runs/segment"), "--out", help="output folder: masks/, overlays/, predictions.csv, dice.csv, metrics.json"),
        model: Optional[Path] = typer.Option(None, "--model", help="segmenter file (default: the bundled one)"),
        batch_size: int = typer.Option(32, "--batch-size"),
        overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="write an overlay PNG per slice"),
    ) -> None:
        """Segment the tumor on every slice: a mask and an overlay per slice; Dice and IoU where
        expert masks exist; the false-positive rate on tumor-free (notumor) slices."""
        from tumorlens.segment.run import segment_dataset

        with exit_on_user_error():  # SegmenterError and DatasetError are TumorlensErrors
            m = segment_dataset(data, out, model=model, batch_size=batch_size, overlays=overlays)
        line = f"segmented {m['n_slices']} slices -> {out}"
        if m.get("dice_mean") is not None:
            line += f"  Dice {m['dice_mean']:.4f}  IoU {m['iou_mean']:.4f} (on {m['n_scored']} slices with an expert tumor mask)"
        fp = m["tumor_free"]
        if fp["n_slices"]:
            line += f"  tumor-free slices with a predicted tumor: {fp['with_predicted_tumor']}/{fp['n_slices']} ({fp['false_positive_rate']:.1%})"
        typer.echo(line)
