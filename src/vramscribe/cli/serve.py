"""``vramscribe serve``: the HTTP service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from vramscribe.cli.cluster import ray_options
from vramscribe.cli.options import fake_config, job_default, run_options, run_settings
from vramscribe.console import error, stderr_console
from vramscribe.errors import VramscribeError
from vramscribe.paths import data_dir
from vramscribe.settings import (
    MIB,
    SERVICE_KEEP_ALIVE_S,
    SERVICE_MAX_WAIT_FOR_MEMORY_S,
    ServiceConfig,
    default,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Default: ~/.local/share/vramscribe"
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", envvar="VRAMSCRIBE_TOKEN", help="Bearer token (or $VRAMSCRIBE_TOKEN).")
@click.option(
    "--allowed-root",
    "allowed_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder whose files clients may name by path (repeatable).",
)
@click.option("--model", default=job_default("model"), show_default=True, help="Default model.")
@click.option("--store", "store_url", help="Database URL (default: SQLite in the data folder).")
@click.option(
    "--max-upload-mib",
    default=default(ServiceConfig, "max_upload_bytes") // MIB,
    show_default=True,
    type=click.IntRange(1),
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    default=default(ServiceConfig, "drain_timeout_s"),
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM, seconds running jobs may take to finish.",
)
@click.option(
    "--retain-days",
    type=click.FloatRange(0, min_open=True),
    help="Erase finished jobs, their audio and transcripts after this many days.",
)
@click.option(
    "--api-only",
    is_flag=True,
    help="Serve the API without scheduling: a scheduler sharing the store runs the jobs.",
)
@ray_options
@run_options(keep_alive_s=SERVICE_KEEP_ALIVE_S, max_wait_for_memory_s=SERVICE_MAX_WAIT_FOR_MEMORY_S)
def serve(**opts: Any) -> None:
    """Run the service: HTTP API, live events, durable job store."""
    import uvicorn

    from vramscribe.service.app import create_app

    console = stderr_console()
    if opts["host"] not in LOOPBACK and not opts["token"]:
        error(
            f"refusing to listen on {opts['host']} without --token "
            "(anyone on the network could use it)",
            console,
        )
        sys.exit(2)
    config = ServiceConfig(
        data_dir=opts["data_dir"] or data_dir(),
        store_url=opts["store_url"],
        token=opts["token"],
        allowed_roots=tuple(p.resolve() for p in opts["allowed_roots"]),
        model=opts["model"],
        max_upload_bytes=opts["max_upload_mib"] * MIB,
        engine=opts["engine"],
        fake_config=fake_config(opts),
        run=run_settings(opts),
        drain_timeout_s=opts["drain_timeout_s"],
        retain_days=opts["retain_days"],
        api_only=opts["api_only"],
        ray_address=opts["ray_address"],
        shared_path=opts["shared_path"],
        address=f"http://{opts['host']}:{opts['port']}",
    )
    try:
        app = create_app(config)
    except VramscribeError as exc:
        error(str(exc), console)
        sys.exit(2)
    uvicorn.run(app, host=opts["host"], port=opts["port"], log_level="warning")
