"""The ``--ray`` and ``--shared-path`` options, and a CLI batch run on a Ray cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from vramscribe.console import say
from vramscribe.core.jobs import JobState
from vramscribe.submit.run import Run
from vramscribe.view import PlainLog

F = TypeVar("F", bound=Callable[..., Any])


def ray_options(fn: F) -> F:
    """``--ray auto|ADDRESS`` and ``--shared-path``."""
    fn = click.option(
        "--shared-path",
        type=click.Path(file_okay=False, path_type=Path),
        help="Storage every Ray node mounts at the same path: audio under it goes by path, "
        "other audio through Ray's object store.",
    )(fn)
    return click.option(
        "--ray",
        "ray_address",
        metavar="auto|ADDRESS",
        help="Run jobs on the nodes of a Ray cluster (auto: the cluster this machine joined).",
    )(fn)


def run_batch_on_ray(run: Run, address: str, shared: Path | None, console: Console) -> bool:
    """Run the batch's queued jobs on the cluster; True when every job reached an end."""
    import ray

    from vramscribe.cluster.ray_head import RayHead, ray_address

    head = RayHead(
        run.store,
        run.settings.scheduler,
        run.runner.run_dir / "ray",
        address=ray_address(address),
        shared_path=shared,
    )
    head.listeners.append(PlainLog(run.runner))
    for task in list(run.runner.tasks.values()):
        if task.job.state is JobState.PENDING:
            head.add(task)
    say(f"running {len(head.tasks)} job(s) on the Ray cluster", console)
    try:
        head.run()
    finally:
        head.close()
        ray.shutdown()
        run.close()
    return not head.busy()
