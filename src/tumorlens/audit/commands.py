"""`tumorlens audit`: the clinical reliability audit of one model on one dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from tumorlens.models.cli_options import with_model_options

MODEL_HELP = ("model file: a tumorlens checkpoint, or your own (state dict with --arch, TorchScript, torch.export "
              ".pt2, ONNX, Keras .keras/.h5; describe its input with --model-spec or the flags below)")


def register(app: typer.Typer) -> None:
    @app.command()
    @with_model_options
    def audit(
        model: Path | None = typer.Option(None, "--model", help=MODEL_HELP),
        data: Path | None = typer.Option(None, "--data", help="dataset folder (give the root with Training/ and "
                                            "Testing/ so leakage can be checked)"),
        out: Path = typer.Option(Path("runs/audit"), "--out", help="output folder: report.html, summary.json, "
                                 "gradcam_analysis.csv, figures/"),
        demo: bool = typer.Option(False, "--demo", help="the bundled model on the bundled sample slices"),
        methods: str = typer.Option(",".join(_default_methods()), "--methods",
                                    help=f"explainers to compare (the per-image localisation map, {_primary_label()}, is always added)"),
        limit: int | None = typer.Option(None, "--limit", help="audit a seeded, class-mixed subset of N images"),
        batch_size: int = typer.Option(32, "--batch-size", help=f"images per model pass, at most {_pass_limits()}: "
                                       "larger passes raise the peak memory"),
        compare_n: int | None = typer.Option(None, "--compare-n", help="images for the explainer comparison and "
                                                "deletion/insertion curves [default: 16; 10 with --demo]"),
        sanity_n: int = typer.Option(4, "--sanity-n", help="images for the model-randomisation check"),
        road_n: int = typer.Option(4, "--road-n", help="images of the comparison also scored by ROAD "
                                   "(noisy-imputation removal; ~1-10 s per image, level and explainer); 0 to skip"),
        data_checks: bool = typer.Option(True, "--data-checks/--no-data-checks", help="near twins and confounders"),
        exclude_unlike_mri: bool = typer.Option(False, "--exclude-unlike-mri", help="leave out of the audit the images "
                                                "the input check finds unlike brain MRI slices (by default they are "
                                                "counted and shown in the report, and stay in)"),
        training_data: str | None = typer.Option(None, "--training-data",
                                                    help="the model's training data, to find audited images it has "
                                                    "seen: 'auto' (hashes stored in the checkpoint, else the folder it "
                                                    "names; the default), 'stored' (hashes only; the --demo default), "
                                                    "'none', or a folder"),
        class_map: str | None = typer.Option(None, "--class-map", help="rename dataset classes: old=new,..."),
        seed: int = typer.Option(0, "--seed"),
        robustness_n: str = typer.Option("512", "--robustness-n", help="images re-run under each acquisition "
                                         "shift (seeded, class-stratified subset); 'all', or 0 to skip"),
        compare: Path | None = typer.Option(None, "--compare", help="an earlier audit folder: also write "
                                            "comparison.html/.json (that audit = A, this one = B)"),
        predicted_masks: bool = typer.Option(True, "--predicted-masks/--no-predicted-masks",
                                             help="slices without an expert tumor mask (Kaggle) get the bundled "
                                             "segmenter's; --no-predicted-masks: expert masks only"),
        segmenter: Path | None = typer.Option(None, "--segmenter", help="segmenter file (default: the bundled one)"),
        figshare_reference: Path | None = typer.Option(None, "--figshare-reference", help="a figshare folder: agreement "
                                                       "of predicted and expert masks on the slices both sets share"),
        ray: str | None = typer.Option(None, "--ray", help="run the per-image work on a Ray cluster: 'auto' (the "
                                       "one `ray start` made here, else a local one) or its address; needs the "
                                       "ray extra, and every worker must read the same --data and --model paths"),
        ray_workers: int | None = typer.Option(None, "--ray-workers", help="Ray workers (default: one per CPU of the "
                                               "cluster)"),
        model_options: dict | None = None,
    ) -> None:
        """Is the accuracy real, and does the model decide from the tumor? Writes report.html (+ CSV, JSON)."""
        from tumorlens.cli_errors import exit_on_user_error

        with exit_on_user_error():
            if compare is not None:  # refuse a wrong folder before the long run, not after
                from tumorlens.audit.compare import load_summary

                load_summary(compare)
            summary = _run(model, data, out, demo, methods, limit, batch_size, compare_n, sanity_n, data_checks,
                           training_data, class_map, seed, _robustness_n(robustness_n), options=dict(
                               predicted_masks=predicted_masks, segmenter=str(segmenter) if segmenter else None,
                               figshare_reference=str(figshare_reference) if figshare_reference else None,
                               road_n=road_n, ray=ray, ray_workers=ray_workers,
                               exclude_unlike_mri=exclude_unlike_mri), model_options=model_options)
        _print_verdict(summary, out)
        if compare is not None:
            from tumorlens.audit.compare_commands import print_comparison, run_compare

            with exit_on_user_error():
                comp = run_compare(compare, out, out)
            print_comparison(comp, out)


def _default_methods():
    from tumorlens.audit.config import DEFAULT_METHODS

    return DEFAULT_METHODS


def _pass_limits() -> str:
    from tumorlens.audit.config import MAX_BACKWARD_IMAGES, MAX_FORWARD_IMAGES

    return f"{MAX_FORWARD_IMAGES} ({MAX_BACKWARD_IMAGES} for an explainer's backward passes)"


def _primary_label() -> str:
    from tumorlens.audit.config import PRIMARY_LABEL

    return PRIMARY_LABEL


def _robustness_n(text: str) -> int | None:
    from tumorlens.audit.config import AuditError

    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise AuditError(f"--robustness-n takes a number of images or 'all', got {text!r}") from None


def _run(model, data, out, demo, methods, limit, batch_size, compare_n, sanity_n, data_checks, training_data,
         class_map, seed, robustness_n=512, options: dict | None = None, model_options: dict | None = None):
    """options: further AuditConfig fields (tumor-mask source, ROAD images); model_options: load_model's
    keywords for a foreign model (spec, trust_code, spec keys)."""
    from tumorlens.audit.api import audit
    from tumorlens.audit.config import AuditError
    from tumorlens.data.sources import open_dataset

    if compare_n is None:
        compare_n = 10 if demo else 16  # the demo must finish within two minutes on two cores
    if training_data is None:
        # the demo must stay quick: it reads no training folder, only hashes stored in the checkpoint
        training_data = "stored" if demo else "auto"
    if demo:
        from tumorlens.assets import default_model_path

        model = model or default_model_path()
        samples = demo_samples() if data is None else open_dataset(data, class_map=class_map)
    else:
        if model is None or data is None:
            raise AuditError("give --model CKPT and --data DATASET, or --demo for the bundled model and samples")
        samples = open_dataset(data, class_map=class_map)
    config = dict(methods=tuple(methods.split(",")), limit=limit, batch_size=batch_size, compare_n=compare_n,
                  sanity_n=sanity_n, data_checks=data_checks, training_data=training_data, seed=seed,
                  robustness_n=robustness_n, **(options or {}))
    for s in samples.skipped[:5]:
        typer.secho(f"skipped {s.path}: {s.reason}", fg=typer.colors.YELLOW, err=True)
    if len(samples.skipped) > 5:
        typer.secho(f"... and {len(samples.skipped) - 5} more unreadable files", fg=typer.colors.YELLOW, err=True)
    return audit(model, samples, out, **(model_options or {}), **config).summary  # the Python API's audit


def demo_samples():
    """The bundled Kaggle slices (4 classes) and figshare slices (with tumor masks), as one set."""
    from tumorlens.assets import sample_dir
    from tumorlens.data.sample import SampleSet
    from tumorlens.data.sources import open_dataset

    parts = [open_dataset(sample_dir(kind), progress=False) for kind in ("kaggle", "figshare")]
    samples = [s for p in parts for s in p.samples]
    classes = sorted({c for p in parts for c in p.classes})
    return SampleSet(samples, classes, root=str(sample_dir("kaggle").parent), kind="bundled samples",
                     skipped=[k for p in parts for k in p.skipped])


def _print_verdict(summary: dict, out: Path) -> None:
    from rich.console import Console

    colour = {"pass": "green", "warn": "yellow", "fail": "red", "n/a": "dim"}
    con = Console()
    v = summary["verdict"]
    con.print(f"[bold {colour[v['status']]}]{v['status'].upper()}[/]: {v['headline']}")
    for c in v["checks"]:
        con.print(f"  [{colour[c['status']]}]{c['status']:>4}[/] {c['name']}: {c['detail']}", highlight=False)
    con.print(f"report: {out / 'report.html'}  (also summary.json, gradcam_analysis.csv)")
