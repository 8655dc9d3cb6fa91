"""`tumorlens monitor`: the monitoring report of a served model, from its audit-trail database."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def monitor(
        db: str = typer.Option(..., "--db", help="the service's audit-trail database URL (as given to serve --db)"),
        out: Path = typer.Option(..., "--out", help="folder for monitoring.html and monitoring.json"),
        model: Path = typer.Option(None, "--model", help="the served tumorlens checkpoint (default: the bundled "
                                   "model): its rows are reported, against its stored reference profile"),
        reference: Path = typer.Option(None, "--reference", help="dataset to compute the reference profile from "
                                       "(the model's validation data) when the checkpoint has none"),
        window: int = typer.Option(200, "--window", min=20, help="requests per window"),
        windows: int = typer.Option(20, "--windows", min=1, help="how many of the latest windows"),
    ) -> None:
        """Drift of inputs and predictions and estimated accuracy over recent windows of requests."""
        from sqlalchemy.engine import make_url

        from tumorlens.errors import TumorlensError
        from tumorlens.models.loading import load_model
        from tumorlens.monitoring.drift import Thresholds
        from tumorlens.monitoring.html import write_monitoring_report
        from tumorlens.monitoring.reference import stored_reference
        from tumorlens.monitoring.windows import monitoring_report
        from tumorlens.serve.audit_trail import AuditTrail, AuditTrailError
        from tumorlens.serve.reference import reference_for
        from tumorlens.serve.service import resolve_model_path
        from tumorlens.serve.settings import ServeSettings

        try:
            url = make_url(db)
        except Exception:  # noqa: BLE001 - sqlalchemy raises several kinds for a malformed URL
            typer.echo(f"error: {db!r} is not a database URL (e.g. sqlite:///tumorlens-audit.sqlite)", err=True)
            raise typer.Exit(2)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
                and not Path(url.database).is_file():
            # a mistyped path would otherwise be created empty and reported as "no data"
            typer.echo(f"error: no audit database at {url.database}", err=True)
            raise typer.Exit(2)
        try:
            path = resolve_model_path(ServeSettings(model_path=model))
            served = load_model(path)
            profile = reference_for(served, reference) if reference is not None else stored_reference(path)
            trail = AuditTrail(db)
        except (TumorlensError, AuditTrailError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        try:
            rows, others = trail.monitored(served.version, window * windows)
        finally:
            trail.close()
        report = monitoring_report(rows, profile, served.version, served.classes, Thresholds(window=window), windows,
                                   others)
        html, _ = write_monitoring_report(report, out)
        typer.echo(f"{report['status']}: {len(report['windows'])} window(s) of {report['rows']} predictions; "
                   f"{len(report['alerts'])} alert(s) in the latest window -> {html}")
        for alert in report["alerts"]:
            typer.echo(f"  alert: {alert}")
