"""`tumorlens evaluate` and `tumorlens predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from tumorlens.models.cli_options import with_model_options

from tumorlens.cli_errors import exit_on_user_error


def register(app: typer.Typer) -> None:
    @app.command()
    @with_model_options
    def evaluate(
        model: Path = typer.Option(..., "--model", help="model file: a tumorlens checkpoint, or your own with "
                                   "--model-spec (tumorlens audit --help lists the formats)"),
        data: Path = typer.Option(..., "--data", help="dataset folder"),
        out: Path = typer.Option(Path("runs/evaluate"), "--out"),
        split: str = typer.Option("auto", "--split", help="'auto' (Testing when present), a split name, or 'all'"),
        batch_size: int = typer.Option(64, "--batch-size"),
        class_map: Optional[str] = typer.Option(None, "--class-map", help="rename dataset classes: folder=class,..."),
        model_options: Optional[dict] = None,
    ) -> None:
        """Accuracy, per-class precision/recall/F1, ROC-AUC, confusion matrix, calibration, predictions.csv."""
        from tumorlens.data.sources import open_dataset
        from tumorlens.evaluation.evaluate import evaluate as run_evaluate
        from tumorlens.models.loading import load_model
        from tumorlens.data.sources import parse_class_map

        with exit_on_user_error():
            tm = load_model(model, **(model_options or {}))
            samples = open_dataset(data, class_map=parse_class_map(class_map) or None)
            result = run_evaluate(tm, samples, out, split=None if split == "all" else split, batch_size=batch_size)
        _print_summary(result)
        if result["input_check"]["flagged"]:
            typer.secho(f"warning: {result['input_check']['message']} (listed in metrics.json and predictions.csv)",
                        fg=typer.colors.YELLOW, err=True)
        typer.echo(f"wrote {out}/metrics.json, predictions.csv, confusion_matrix.png, reliability.png")

    @app.command()
    @with_model_options
    def predict(
        paths: List[Path] = typer.Argument(..., help="image files, folders, DICOM or NIfTI files"),
        model: Optional[Path] = typer.Option(None, "--model", help="model file: a tumorlens checkpoint (default: the "
                                             "bundled model) or your own, with --model-spec"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
        batch_size: int = typer.Option(64, "--batch-size"),
        model_options: Optional[dict] = None,
    ) -> None:
        """Predict the class of each slice: class, confidence and every class probability."""
        from tumorlens.assets import default_model_path
        from tumorlens.evaluation.predict import predict_paths

        with exit_on_user_error():
            tm_path = model or default_model_path()
            rows, skipped = predict_paths(tm_path, paths, batch_size, model_options)
        if as_json:
            typer.echo(json.dumps({"predictions": rows, "skipped": skipped}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("image", "class", "confidence", *[f"p({c})" for c in rows[0]["probabilities"]] if rows else [],
                      "input check")
        for r in rows:
            table.add_row(r["image"], r["class"], f"{r['confidence']:.3f}", *[f"{p:.3f}" for p in r["probabilities"].values()],
                          "[yellow]not like brain MRI[/yellow]" if "warning" in r else "ok")
        Console().print(table)
        for r in rows:
            if "warning" in r:
                typer.secho(f"warning: {r['image']}: {r['warning']}", fg=typer.colors.YELLOW, err=True)
        for s in skipped:
            typer.secho(f"skipped {s['path']}: {s['reason']}", fg=typer.colors.YELLOW, err=True)


def _print_summary(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    sections = [("all", result["all"])] + ([("leakage-free", result["leakage_free"])] if "leakage_free" in result else [])
    table = Table("metric", *[name for name, _ in sections], title=f"evaluation on {result.get('split') or 'all samples'}")
    table.add_row("n", *[str(m["n"]) for _, m in sections])
    for key in ("accuracy", "macro_f1", "ece"):
        table.add_row(key, *[f"{m[key]:.4f}" for _, m in sections])
    table.add_row("ROC-AUC (macro, OvR)", *[f"{m['roc_auc_ovr']['macro']:.4f}" if m["roc_auc_ovr"]["macro"] else "-" for _, m in sections])
    for c in result["all"]["per_class"]:
        table.add_row(f"F1 {c}", *[f"{m['per_class'][c]['f1']:.4f}" for _, m in sections])
    Console().print(table)
