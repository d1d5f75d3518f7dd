"""A job plus what the runtime needs to run it and write its outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vramscribe.core.jobs import Job
from vramscribe.engines.base import EngineOptions


@dataclass(slots=True, eq=False)
class Task:
    """One job as the runtime holds it: input, engine, outputs and live progress."""

    job: Job
    input: Path
    engine: EngineOptions
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    progress_s: float = 0.0
    pending_reason: str = ""
    device_id: str | None = None
    load_s: float | None = None
    transcribe_s: float | None = None
    wait_s: float | None = None
    worker_pid: int | None = None
    batch_size: int = 1
    """The batch size its current (or last) attempt runs at, as the planner chose it."""
    kept_result: Path | None = None
    """The finished transcript kept in the run folder when its outputs could not be written."""
