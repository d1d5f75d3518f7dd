"""Clients of a running service: submit, jobs, job, wait, cancel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from vramscribe.cli.options import DEFAULT_PRIORITY_NAME
from vramscribe.cli.whisper_options import WhisperCommand, whisper_options
from vramscribe.console import cell, error, literal
from vramscribe.core.jobs import JobState
from vramscribe.errors import VramscribeError


def _client(server: str, token: str | None) -> Any:
    from vramscribe.client import Client

    return Client(server, token)


server_option = click.option(
    "--server", envvar="VRAMSCRIBE_SERVER", default="http://127.0.0.1:8000", show_default=True
)
token_option = click.option("--token", envvar="VRAMSCRIBE_TOKEN", help="Or $VRAMSCRIBE_TOKEN.")


def _run_client(fn: Any) -> None:
    import httpx

    try:
        code = fn()
    except (VramscribeError, httpx.HTTPError) as exc:
        error(str(exc))
        code = 2
    sys.exit(code or 0)


@click.command(cls=WhisperCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@server_option
@token_option
@click.option("--model", "-m")
@click.option("--priority", default=DEFAULT_PRIORITY_NAME, show_default=True)
@click.option("--language")
@whisper_options
@click.option(
    "--split-channels/--no-split-channels",
    "--split_channels/--no_split_channels",
    default=None,
    help="Transcribe each channel on its own, merged with a speaker label per channel.",
)
@click.option("--channel-names", "--channel_names", help="Speaker labels, e.g. agent,customer.")
def submit(files: tuple[str, ...], server: str, token: str | None, **opts: Any) -> None:
    """Upload files to a running service; prints one job id per file.

    Takes the Whisper options of ``vramscribe transcribe``; the service checks them.
    """

    def go() -> int:
        client = _client(server, token)
        for f in files:
            job = client.submit(Path(f), **opts)
            click.echo(f"{job['id']}\t{f}")
        return 0

    _run_client(go)


@click.command()
@server_option
@token_option
@click.option("--status", type=click.Choice([s.value for s in JobState]))
@click.option("--limit", default=50, show_default=True)
def jobs(server: str, token: str | None, status: str | None, limit: int) -> None:
    """List the service's jobs, newest first."""

    def go() -> int:
        data = _client(server, token).jobs(status, limit)
        table = Table("id", "status", "model", "priority", "progress", "input", "reason / error")
        table.columns[0].no_wrap = True
        for j in data["jobs"]:
            table.add_row(
                cell(j["id"]), cell(j["status"]), cell(j["model"]), str(j["priority"]),
                f"{100 * j['progress']:.0f}%", cell(j["input"]),
                cell(j["error"] or j["pending_reason"] or ""),
            )  # fmt: skip
        Console(width=None if sys.stdout.isatty() else 200).print(table)
        click.echo(f"{len(data['jobs'])} of {data['total']} job(s)")
        return 0

    _run_client(go)


@click.command()
@click.argument("job_id")
@server_option
@token_option
def job(job_id: str, server: str, token: str | None) -> None:
    """Show one job: status, progress, reason, state history."""

    def go() -> int:
        click.echo(json.dumps(_client(server, token).job(job_id), indent=2))
        return 0

    _run_client(go)


@click.command()
@click.argument("job_id")
@server_option
@token_option
def wait(job_id: str, server: str, token: str | None) -> None:
    """Follow a job live until it ends; exit 0 if it completed."""
    from rich.progress import Progress

    def go() -> int:
        client = _client(server, token)
        state = "pending"
        with Progress(console=Console(stderr=True)) as progress:
            bar = progress.add_task(literal(job_id), total=1.0)
            for event in client.events(job_id):
                state = event.get("state", state)
                audio = event.get("audio_s") or (event.get("job") or {}).get("audio_s") or 0
                done = event.get("progress_s", 0) or 0
                progress.update(
                    bar,
                    completed=min(1.0, done / audio) if audio else 0,
                    description=literal(str(state)),
                )
        final = client.job(job_id)
        click.echo(
            f"{job_id}: {final['status']}" + (f" ({final['error']})" if final["error"] else "")
        )
        return 0 if final["status"] == "completed" else 1

    _run_client(go)


@click.command()
@click.argument("job_id")
@server_option
@token_option
def cancel(job_id: str, server: str, token: str | None) -> None:
    """Cancel a job; a running worker is stopped and its memory released."""

    def go() -> int:
        data = _client(server, token).cancel(job_id)
        click.echo(f"{job_id}: {data['status']}")
        return 0

    _run_client(go)
