"""A job plus what the runtime needs to run it and write its outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.core.jobs import Job
from vramscribe.engines.base import EngineOptions
from vramscribe.transcript import Segment


@dataclass(slots=True, eq=False)
class Task:
    """One job as the runtime holds it: input, engine, outputs and live progress."""

    job: Job
    input: Path
    engine: EngineOptions
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    progress_s: float = 0.0
    pending_reason: str = ""
    told_reason: str = ""
    """The pending reason listeners were last told of (see ``Runner._apply``)."""
    told_reason_at: float = float("-inf")
    device_id: str | None = None
    load_s: float | None = None
    transcribe_s: float | None = None
    wait_s: float | None = None
    worker_pid: int | None = None
    batch_size: int = 1
    """The batch size its current (or last) attempt runs at, as the planner chose it."""
    kept_result: Path | None = None
    """The finished transcript kept in the run folder when its outputs could not be written."""
    kept: list[Segment] = field(default_factory=list)
    """Segments the worker reported finished, over every attempt so far: a retry
    resumes after the last one instead of starting the file over."""
    kept_before: int = 0
    """How many of ``kept`` the current attempt did not transcribe (it resumed after them)."""
    resumed_from_s: list[float] = field(default_factory=list)
    """Where each resumed attempt started, in seconds from the file's start."""
    language: str | None = None
    """The language the first attempt transcribed in; a resumed attempt keeps it."""
    ran_with: dict[str, Any] = field(default_factory=dict)
    """What the current (or last) attempt runs with: device, compute type, batch size."""
