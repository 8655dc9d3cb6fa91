"""`tumorlens serve`: the web service and its page."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Optional

import typer

from tumorlens.models.cli_options import with_model_options
from tumorlens.serve.settings import ServeSettings


def register(app: typer.Typer) -> None:
    @app.command()
    @with_model_options
    def serve(
        model: Path = typer.Option(None, "--model", help="model to serve: a tumorlens checkpoint (default: the bundled "
                                   "model) or your own with --model-spec (tumorlens audit --help lists the formats)"),
        host: str = typer.Option("127.0.0.1", help="address to listen on"),
        port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
        no_auth: bool = typer.Option(False, "--no-auth", help="no API keys (local demo only)"),
        api_keys_file: Path = typer.Option(None, "--api-keys-file",
                                           help="file with one API key per line (besides TUMORLENS_API_KEYS)"),
        db: str = typer.Option("sqlite:///tumorlens-audit.sqlite", "--db",
                               help="audit-trail database URL (SQLAlchemy)"),
        max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="largest accepted upload"),
        workers: int = typer.Option(1, "--workers", min=1,
                                    help="model threads, each with its own copy of the network"),
        max_batch: int = typer.Option(16, "--max-batch", min=1, help="images per model pass when requests arrive together"),
        batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", min=0.0,
                                            help="how long the model waits for more requests to join a batch"),
        threads: int = typer.Option(1, "--threads", min=1, help="torch threads for inference (per process)"),
        request_timeout: float = typer.Option(30.0, "--request-timeout", min=0.1,
                                              help="seconds a request may take to arrive in full; then the connection is closed"),
        max_connections: int = typer.Option(64, "--max-connections", min=1,
                                            help="open connections at once; beyond, new requests get 503"),
        slow_budget: float = typer.Option(120.0, "--slow-budget", min=0.1,
                                          help="seconds a slow explainer (Score-CAM, IG, GradientSHAP) may take; then 503"),
        decode_memory_mb: float = typer.Option(768.0, "--decode-memory-mb", min=1.0,
                                               help="memory that decoding uploads may hold at once, across requests"),
        segmenter: Path = typer.Option(None, "--segmenter",
                                       help="tumor segmenter for the outlines (default: the bundled one)"),
        no_segmenter: bool = typer.Option(False, "--no-segmenter", help="no tumor outlines (tumor: null)"),
        no_learned_check: bool = typer.Option(False, "--no-learned-input-check", help="input check by the rules only, "
                                              "without the learned detector (to measure its cost; it catches CT, "
                                              "other body parts and phantoms that the rules let through)"),
        reference: Path = typer.Option(None, "--reference", help="dataset to compute the monitoring reference from at "
                                       "start-up, for a model without one (its validation split when the model's "
                                       "provenance names it, else every slice)"),
        model_options: Optional[dict] = None,
    ) -> None:
        """Serve predictions and explanations over HTTP, with a web page at /. Research tool, not a diagnosis."""
        from tumorlens.errors import TumorlensError
        from tumorlens.serve.app import create_app
        from tumorlens.serve.audit_trail import AuditTrailError
        from tumorlens.serve.auth import AuthConfigError

        settings = ServeSettings(model_path=model, auth=not no_auth, api_keys_file=api_keys_file, db_url=db,
                                 max_upload_mb=max_upload_mb, inference_threads=threads,
                                 workers=workers, max_batch=max_batch, batch_wait_ms=batch_wait_ms,
                                 request_timeout_s=request_timeout, max_connections=max_connections,
                                 slow_budget_s=slow_budget, decode_memory_mb=decode_memory_mb,
                                 segmenter=not no_segmenter, segmenter_path=segmenter, model_options=model_options,
                                 reference_data=reference, learned_input_check=not no_learned_check)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            web = create_app(settings)
        except (TumorlensError, AuthConfigError, AuditTrailError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if no_auth and not _is_loopback(host):
            typer.echo(f"warning: serving without API keys on {host}, reachable from other machines", err=True)
        typer.echo(f"tumorlens serving {web.state.predictor.model.version} on http://{host}:{port}/ "
                   f"(docs at /docs; {'no auth' if no_auth else 'X-API-Key required'})")
        from tumorlens.serve.http import run

        run(web, host, port, request_timeout, max_connections)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
