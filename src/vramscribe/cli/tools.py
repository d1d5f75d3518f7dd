"""Commands that look rather than run: devices, simulate, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from vramscribe.cli.options import limit_options, memory_limits
from vramscribe.console import cell, error
from vramscribe.core.settings import Settings
from vramscribe.devices.select import pick_devices
from vramscribe.errors import VramscribeError
from vramscribe.settings import RunSettings, default


@click.command()
@click.option("--device", default=default(RunSettings, "device"), show_default=True)
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|ADDRESS",
    help="Show the devices of every node of a Ray cluster instead, read on each node.",
)
@limit_options
def devices(device: str, ray_address: str | None, **opts: Any) -> None:
    """Show the devices vramscribe sees, their memory, which processes use it, and the
    limits set with --memory-limit, --memory-fraction and --reserve."""
    console = Console()
    if ray_address:
        sys.exit(_cluster_devices(ray_address, console))
    try:
        found = pick_devices(device, 1)
        limits = memory_limits(opts)
        limits.check([d.id for d in found])
    except VramscribeError as exc:
        error(str(exc), console)
        sys.exit(2)
    table = Table("device", "kind", "total", "free", "limit", "reserve", "processes")
    for dev in found:
        r = dev.read(0.0)
        procs = ", ".join(f"{pid}: {mb:.0f} MB" for pid, mb in sorted(r.processes.items()))
        own = limits.for_device(dev.id, r.total_mb)
        limit = "none" if own.limit_mb is None else f"{own.limit_mb / 1024:.1f} GiB"
        table.add_row(
            cell(dev.id),
            cell(dev.kind),
            f"{r.total_mb / 1024:.1f} GiB",
            f"{r.free_mb / 1024:.1f} GiB",
            limit,
            f"{own.reserve_mb / 1024:.1f} GiB",
            cell(procs),
        )
    console.print(table)


@click.command()
@click.argument("source")
@click.option(
    "--gpus",
    default="1x24g",
    show_default=True,
    help="e.g. 2x24g, 8x80g, 1x16g; 4x(2x24g): four machines",
)
@click.option("--model", default="large-v3", show_default=True)
@click.option(
    "--max-sim-time",
    default=7 * 86400.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Simulated seconds after which jobs not done count as unfinished (and fail the run).",
)
@click.option(
    "--max-wait-for-memory",
    default=default(Settings, "max_wait_for_memory_s"),
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Seconds a job may stay blocked by other processes' memory before it fails.",
)
@limit_options
def simulate(
    source: str,
    gpus: str,
    model: str,
    max_sim_time: float,
    max_wait_for_memory: float,
    **opts: Any,
) -> None:
    """Plan capacity: how long a folder of audio (or a scenario file) would take.

    --memory-limit, --memory-fraction and --reserve apply to vramscribe's policy (the
    baselines know no limits), on the simulated GPUs cuda:0, cuda:1, ..."""
    from vramscribe.sim.capacity import simulate_command

    console = Console()
    try:
        limits = memory_limits(opts)
    except VramscribeError as exc:
        error(str(exc), console)
        sys.exit(2)
    settings = Settings(max_wait_for_memory_s=max_wait_for_memory, limits=limits)
    sys.exit(simulate_command(source, gpus, model, console, settings, max_sim_time))


@click.command()
@click.argument("run", required=False)
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), help="Write one HTML page."
)
@click.option("--png", type=click.Path(file_okay=False, path_type=Path), help="Write charts here.")
@click.option(
    "--chrome-trace",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a trace for Perfetto or chrome://tracing.",
)
def report(run: str | None, html: Path | None, png: Path | None, chrome_trace: Path | None) -> None:
    """Where time and memory went in a run (default: the latest), with findings.

    RUN is a run folder, its timeline file, or a run's name under the data folder.
    """
    from vramscribe.report import report_command

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    sys.exit(report_command(run, html, png, chrome_trace, console))


def _cluster_devices(address: str, console: Console) -> int:
    """``devices --ray``: one row per device of every node that has devices."""
    from vramscribe.cluster.ray_devices import read_node_devices
    from vramscribe.cluster.ray_head import ray_address

    try:
        found = read_node_devices(ray_address(address))
    except VramscribeError as exc:
        error(str(exc), console)
        return 2
    if not found:
        error("no node of the Ray cluster has devices for vramscribe", console)
        return 1
    table = Table("node", "address", "device", "kind", "total", "free", "processes")
    for dev in found:
        procs = ", ".join(f"{pid}: {mb:.0f} MB" for pid, mb in sorted(dev.processes.items()))
        table.add_row(
            dev.node_id[:8],
            dev.address,
            cell(dev.device_id),
            dev.kind,
            f"{dev.total_mb / 1024:.1f} GiB",
            f"{dev.free_mb / 1024:.1f} GiB",
            cell(procs),
        )
    console.print(table)
    return 0
