"""The `tumorlens` command line. Each part of the package registers its own commands here."""

from __future__ import annotations

import importlib

from tumorlens.runtime import configure_process

configure_process()  # before any command module imports torch

import typer  # noqa: E402

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Train, explain and audit brain-tumor MRI classifiers; check datasets for leakage; serve predictions.",
)

@app.callback()
def main() -> None:
    """tumorlens: is the accuracy real, and does the model decide from the tumor?"""


# Each module defines register(app) and owns its commands' options.
COMMAND_MODULES = (
    "tumorlens.data.commands",
    "tumorlens.training.commands",
    "tumorlens.evaluation.commands",
    "tumorlens.explain.commands",
    "tumorlens.audit.commands",
    "tumorlens.audit.compare_commands",
    "tumorlens.serve.commands",
    "tumorlens.serve.monitor_commands",
    "tumorlens.training.segment_commands",
    "tumorlens.segment.commands",
    "tumorlens.models.commands",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a part not built yet; anything else missing is a real error
        if exc.name != _name:
            raise
        continue
    _module.register(app)


@app.command()
def version() -> None:
    """Print the tumorlens version."""
    from tumorlens.version import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
