"""`tumorlens compare A B`: two finished audits side by side (comparison.html, comparison.json)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        a: Path = typer.Argument(..., help="the reference audit folder (e.g. the model before retraining)"),
        b: Path = typer.Argument(..., help="the audit folder to compare with it (e.g. the retrained model)"),
        out: Path | None = typer.Option(None, "--out", help="where to write comparison.html and comparison.json "
                                        "[default: B's folder]"),
    ) -> None:
        """What B fixed and what it broke, relative to A: verdict checks and key figures side by side."""
        from tumorlens.cli_errors import exit_on_user_error

        with exit_on_user_error():
            comp = run_compare(a, b, out or b)
        print_comparison(comp, out or b)


def run_compare(a: Path, b: Path, out: Path) -> dict:
    from tumorlens.audit.compare import compare_audits

    return compare_audits(a, b, out)


def print_comparison(comp: dict, out: Path) -> None:
    from rich.console import Console

    con = Console()
    colour = {"better": "green", "worse": "red"}
    for r in comp["checks"]:
        sa = r["a"]["status"] if r["a"] else "-"
        sb = r["b"]["status"] if r["b"] else "-"
        con.print(f"  {r['name']:<16} {sa:>5} -> {sb:<5} [{colour.get(r['change'], 'dim')}]{r['change']}[/]",
                  highlight=False)
    k = comp["counts"]
    con.print(f"figures: {k['better']} better, {k['worse']} worse, {k['same']} same, {k['n/a']} n/a (B - A)")
    for n in comp["notes"]:
        con.print(f"[yellow]note:[/] {n}", highlight=False)
    con.print(f"comparison: {Path(out) / 'comparison.html'}  (also comparison.json)")
