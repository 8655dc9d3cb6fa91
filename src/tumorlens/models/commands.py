"""`tumorlens model inspect FILE`: what a model file is, and a spec template to fill in."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumorlens.models.cli_options import with_model_options


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="Look at a model file before auditing it.", no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @model_app.command("inspect")
    @with_model_options
    def inspect_command(
        file: Path = typer.Argument(..., help="model file (.pt, .pth, .pt2, .onnx, .keras, .h5)"),
        spec_out: Optional[Path] = typer.Option(None, "--write-spec", help="write a spec template here "
                                                "(default: FILE with .toml beside it, when it does not exist)"),
        model_options: Optional[dict] = None,
    ) -> None:
        """Print the format, input, number of outputs and candidate CAM layers; write a spec template."""
        from tumorlens.cli_errors import exit_on_user_error
        from tumorlens.models.inspect import inspect_model
        from tumorlens.models.spec import spec_template

        with exit_on_user_error():
            found = inspect_model(file, **(model_options or {}))
            found.setdefault("arch", (model_options or {}).get("arch"))
        for key in ("format", "description", "input_shape", "num_outputs", "classes", "cam_layer", "cam_candidates",
                    "capabilities", "notes", "problem"):
            if found.get(key) not in (None, [], ""):
                typer.echo(f"{key}: {found[key]}")
        if found["format"] == "tumorlens" or found.get("problem"):
            return  # a checkpoint carries its own spec; a model that did not load has nothing to template
        target = spec_out or file.with_suffix(".toml")
        if spec_out is None and target.exists():
            typer.echo(f"spec template not written: {target} exists (give --write-spec PATH)")
            return
        target.write_text(spec_template(found))
        typer.echo(f"wrote a spec template to {target}: check every line, then pass --model-spec {target}")
