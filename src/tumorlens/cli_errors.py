"""Turn the errors a user can cause (bad paths, bad files, bad options) into one clear line and exit 2."""

from __future__ import annotations

import contextlib

import typer


@contextlib.contextmanager
def exit_on_user_error():
    try:
        yield
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
