"""Turn the errors a user can cause (bad paths, bad files, bad options) into one clear line and exit 2.

Only TumorlensError (tumorlens.errors) and the OS's file errors count as the user's; any other
exception (a ValueError from numpy, say) is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib

import typer

from tumorlens.errors import TumorlensError

USER_ERRORS = (TumorlensError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


@contextlib.contextmanager
def exit_on_user_error():
    try:
        yield
    except USER_ERRORS as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
