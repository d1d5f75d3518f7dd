"""Defaults of a run and of the service, in one place, one docstring per field.

The CLI's options (``transcribe`` and ``serve``), the service's configuration
and its request handlers take their defaults from here. Per-job options (model,
priority, beam size, ...) are the fields of
:class:`~vramscribe.submit.request.JobRequest`, with their defaults; the
planner's knobs (safety margin, instance caps, warm instances) are
:class:`~vramscribe.core.settings.Settings`, held here as ``RunSettings.scheduler``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from vramscribe.core.settings import Settings
from vramscribe.submit.request import JobRequest

MIB = 1024 * 1024


def default(cls: type[Any], name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (for the CLI's options)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(name)


SERVICE_KEEP_ALIVE_S = 60.0
"""How long the service keeps an idle instance for the next request of its model.

A batch knows its whole queue, so it releases idle instances at once
(``Settings.keep_alive_s``, 0); a service waits a while for more work.
"""


SERVICE_MAX_WAIT_FOR_MEMORY_S = 1800.0
"""How long a service's job may stay blocked by other processes' memory before it fails.

A batch gives up after 5 minutes (``Settings.max_wait_for_memory_s``) so that its
run ends; a service's clients can wait longer for a neighbour to finish.
"""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How a run executes its jobs: a CLI batch and the service alike."""

    device: str = "auto"
    """auto, cpu, cuda, or cuda:0,cuda:1 (auto: all GPUs NVML finds, else the CPU)."""

    cpu_threads: int = 1
    """Threads per instance on the CPU (instances = cores / threads)."""

    hang_timeout_s: float = 600.0
    """A worker silent this long is killed and its job retried."""

    scheduler: Settings = field(default_factory=Settings)
    """The planner's settings: safety margin, instance caps, warm instances."""


def service_run() -> RunSettings:
    """The service's run defaults: a batch's, but idle instances wait for more work."""
    return RunSettings(
        scheduler=Settings(
            keep_alive_s=SERVICE_KEEP_ALIVE_S, max_wait_for_memory_s=SERVICE_MAX_WAIT_FOR_MEMORY_S
        )
    )


@dataclass(frozen=True)
class ServiceConfig:
    """What ``vramscribe serve`` runs with."""

    data_dir: Path
    """Everything the service keeps: store, uploads, transcripts, run folders."""

    store_url: str | None = None
    """SQLAlchemy URL; default: SQLite in ``data_dir``."""

    token: str | None = None
    """Bearer token every endpoint but the health checks requires (None: no auth)."""

    allowed_roots: tuple[Path, ...] = ()
    """Folders whose files clients may name by server-side path."""

    model: str = default(JobRequest, "model")
    """Model for jobs that do not name one (and for OpenAI's ``whisper-1``)."""

    max_upload_bytes: int = 2048 * MIB
    """Uploads larger than this are refused while they stream in."""

    engine: str = default(JobRequest, "engine")
    """``faster-whisper``, or ``fake`` with ``fake_config`` (tests, demos without models)."""

    fake_config: dict[str, object] = field(default_factory=dict)
    """Options of the fake engine."""

    run: RunSettings = field(default_factory=service_run)
    """Devices, threads, the hang timeout and the planner's settings."""

    # -- deployments: drain, retention ----------------------------------------------
    drain_timeout_s: float = 60.0
    """On SIGTERM, how long running jobs may take to finish before the service stops."""

    retain_days: float | None = None
    """Finished jobs older than this are erased with their audio and transcripts (None: kept)."""
    api_only: bool = False
    """Serve the API without scheduling: jobs are stored for the store's scheduler(s)."""

    address: str | None = None
    """Where this service listens, named by a second scheduler that is refused."""

    lease_s: float = 30.0
    """How long a scheduler's lease on a job lasts unless its heartbeat renews it."""

    ray_address: str | None = None
    """Run jobs on a Ray cluster (``auto`` or an address); None: on this machine's devices."""

    shared_path: Path | None = None
    """Storage every Ray node mounts at the same path (audio under it goes by path)."""
