"""`tumorlens explain`: overlays for one image or a folder, or every method side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tumorlens.models.cli_options import with_model_options

from tumorlens.explain.methods import DEFAULT_METHOD, methods_help


def register(app: typer.Typer) -> None:
    @app.command("explain")
    @with_model_options
    def explain_command(
        image: Path = typer.Option(..., "--image", help="an image file (JPEG/PNG/BMP/TIFF, DICOM, NIfTI, .mat) or a folder"),
        model: Optional[Path] = typer.Option(None, "--model", help="checkpoint (default: the model shipped with tumorlens)"),
        method: str = typer.Option(DEFAULT_METHOD, "--method",
                                   help=f"{methods_help()}; several comma-separated, or 'all' for a figure "
                                        f"comparing every method"),
        out: Path = typer.Option(Path("explanations"), "--out", help="output folder"),
        target: Optional[str] = typer.Option(None, "--target", help="class to explain (name or index); default: the predicted class"),
        layer: Optional[str] = typer.Option(None, "--layer", help="CAM target layer (dotted module name); default: the architecture's last conv stage"),
        batch_size: int = typer.Option(32, "--batch-size", help="images (or perturbed copies) per model pass"),
        param: List[str] = typer.Option([], "--param", help="method parameter KEY=VALUE, repeatable (e.g. steps=64, window=16, samples=300)"),
        mask: Optional[Path] = typer.Option(None, "--mask", help="tumor mask image for a single --image: its outline is drawn"),
        alpha: float = typer.Option(0.5, "--alpha", help="heatmap opacity, 0-1"),
        cmap: str = typer.Option("jet", "--cmap", help="colour map: jet, turbo, inferno, magma, viridis, hot, plasma, parula"),
        model_options: Optional[dict] = None,
    ) -> None:
        """Explain predictions: one overlay PNG per image and predictions.csv (or one comparison figure per image)."""
        from tumorlens.cli_errors import exit_on_user_error
        from tumorlens.explain.runner import explain_files, parse_params
        from tumorlens.models.loading import load_model

        with exit_on_user_error():
            params = parse_params(param)
            if model is None:
                from tumorlens.assets import default_model_path

                model_path = default_model_path()
            else:
                model_path = model
            tm = load_model(model_path, **(model_options or {}))
            result = explain_files(tm, image, out, method=method, target=target, layer=layer, batch_size=batch_size,
                                   params=params, alpha=alpha, cmap=cmap, mask_path=mask)
        for path, reason in result.skipped:
            typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
        for path, warning in result.flagged:
            typer.secho(f"warning: {path}: {warning}", fg=typer.colors.YELLOW, err=True)
        kind = "comparison figures" if method.strip().lower() == "all" or "," in method else "overlays"
        typer.echo(f"wrote {len(result.outputs)} {kind} to {out}; predictions: {result.predictions_csv}")
