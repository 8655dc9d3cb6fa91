"""`tumorlens data ...`: dataset commands (check)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import typer

from tumorlens.cli_errors import exit_on_user_error

data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets: counts, confounders, corrupt files, leakage.")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("check")
def check(
    dataset: Path = typer.Argument(..., help="dataset folder or file (class folders, figshare, .mat, DICOM, NIfTI)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write check.json, near_twins.csv and near_duplicates.csv here"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON instead of tables"),
    hamming: Optional[int] = typer.Option(None, "--hamming", help="pHash Hamming threshold for near duplicates (default 2)"),
    class_map: Optional[str] = typer.Option(None, "--class-map", help="rename classes: folder=class,..."),
    kind: Optional[str] = typer.Option(None, "--kind", help="force the layout (split_class_folders, class_folders, "
                                       "figshare_converted, figshare_mat, dicom, nifti, images)"),
    simulate_split: Optional[str] = typer.Option(None, "--simulate-split", help="'slice' or 'patient': split the "
                                                 "training part as a user would and report what validation leaks"),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="validation share for --simulate-split"),
    seed: int = typer.Option(0, "--seed"),
    ray: Optional[str] = typer.Option(None, "--ray", help="read, hash and measure the images on a Ray cluster: "
                                      "'auto' or its address (needs the ray extra; workers read the same paths)"),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", help="Ray workers (default: one per CPU)"),
) -> None:
    """Counts per class and split, sizes, channels and intensity by class, corrupt files, near duplicates."""
    from tumorlens.data.checks import DEFAULT_HAMMING, check_dataset
    from tumorlens.data.sources import open_dataset

    with exit_on_user_error():
        ds = open_dataset(dataset, class_map=class_map, kind=kind, allow_unlabeled=True)
        report = check_dataset(
            ds, hamming=DEFAULT_HAMMING if hamming is None else hamming, simulate_split=simulate_split,
            val_fraction=val_fraction, seed=seed, ray=ray, ray_workers=ray_workers,
        )
        if out is not None:
            write_report(report, out)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)
        if out is not None:
            typer.echo(f"wrote {out / 'check.json'}, {out / 'near_twins.csv'}, {out / 'near_duplicates.csv'}")


def write_report(report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(report.to_dict(), indent=2))
    with open(out / "near_twins.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["test_path", "train_path", "distance", "test_label", "train_label"])
        for p in sorted(report.testing_pairs, key=lambda p: (p.key_a, p.distance, p.key_b)):
            w.writerow([p.key_a, p.key_b, p.distance, p.label_a, p.label_b])
    with open(out / "near_duplicates.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path_a", "path_b", "split_a", "split_b", "label_a", "label_b", "distance"])
        for p in report.pairs:
            w.writerow([p.key_a, p.key_b, p.split_a, p.split_b, p.label_a, p.label_b, p.distance])


def print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from tumorlens.data.checks import NO_SPLIT

    console = Console()
    console.print(f"[bold]{report.root}[/bold]  ({report.kind}, {report.n_samples} slices)")

    splits = sorted(report.counts)
    classes = sorted({c for v in report.counts.values() for c in v})
    t = Table(title="Slices per class and split")
    t.add_column("class")
    for sp in splits:
        t.add_column(sp, justify="right")
    t.add_column("total", justify="right")
    for c in classes:
        row = [report.counts[sp].get(c, 0) for sp in splits]
        t.add_row(c, *map(str, row), str(sum(row)))
    console.print(t)

    t = Table(title="By class: as stored, and intensity relative to each image's max (Cohen's d vs other classes)")
    for col in ("class", "sizes", "1-ch / 3-ch files", "colour", "brightness", "contrast", "framing", "border"):
        t.add_column(col, justify="left" if col in ("class", "sizes") else "right")
    for c in classes:
        ch = report.channels.get(c, {})
        sizes = report.sizes.get(c, {})
        size_txt = ", ".join(f"{k} ({v})" for k, v in list(sizes.items())[:2]) + (" ..." if len(sizes) > 2 else "")
        it = report.intensity.get(c, {})

        def cell(name):
            d = it.get(f"{name}_d")
            mark = "[red]" if d is not None and abs(d) >= 0.8 else ""
            return f"{it.get(name, 0):.3f}" + (f" {mark}({d:+.1f})" if d is not None else "")

        t.add_row(c, size_txt, f"{ch.get('1', 0)} / {ch.get('3', 0)}", str(report.colour_files.get(c, 0)),
                  cell("mean"), cell("contrast"), cell("foreground"), cell("edge"))
    console.print(t)

    t = Table(title=f"Near duplicates (pHash, Hamming <= {report.hamming})")
    for col in ("where", "images", "with a twin", "share", "label conflicts"):
        t.add_column(col, justify="left" if col == "where" else "right")
    for sp, v in report.within_split.items():
        t.add_row("within the dataset" if sp == NO_SPLIT else f"within {sp}", str(v["images"]), str(v["images_with_twin"]), f"{100 * v['share']:.1f}%",
                  str(v["label_conflicts"]))
    for pair, v in report.cross_split.items():
        a, b = pair.split("->")
        t.add_row(f"{a} with a twin in {b}", str(v["images"]), str(v["images_with_twin"]), f"{100 * v['share']:.1f}%",
                  str(v["label_conflicts"]))
    console.print(t)
    if report.twin_share_by_threshold:
        shares = "  ".join(f"<={k}: {100 * v:.1f}%" for k, v in report.twin_share_by_threshold.items())
        console.print(f"Testing with a twin in Training, by threshold: {shares}")

    if report.skipped:
        t = Table(title=f"Skipped files ({len(report.skipped)})")
        t.add_column("path")
        t.add_column("reason")
        for s in report.skipped[:15]:
            t.add_row(s["path"], s["reason"])
        if len(report.skipped) > 15:
            t.add_row("...", f"{len(report.skipped) - 15} more in check.json")
        console.print(t)

    console.print("[bold]Findings[/bold]" if report.findings else "[green]No findings.[/green]")
    for f in report.findings:
        colour = "red" if f.startswith(("leakage", "warning")) else "yellow" if f.startswith("confounder") else "white"
        console.print(f"  [{colour}]- {f}[/{colour}]", highlight=False)
