"""A run as the report reads it: jobs, their state changes and attempts, device samples.

:mod:`vramscribe.report.load` builds these from a run's timeline; the analysis,
charts and trace read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVE = ("loading", "processing")
FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class StateChange:
    t: float
    from_state: str
    to_state: str
    reason: str
    device: str | None
    attempt: int


@dataclass(frozen=True, slots=True)
class Load:
    t: float
    device: str
    load_s: float
    memory_mb: float
    reserved_mb: float


@dataclass(frozen=True, slots=True)
class Release:
    t: float
    device: str
    release_s: float
    pid: int

    @property
    def exited_at(self) -> float:
        return self.t - self.release_s


@dataclass(frozen=True, slots=True)
class Failure:
    t: float
    kind: str
    message: str
    device: str | None


@dataclass(frozen=True, slots=True)
class ReasonChange:
    t: float
    reason: str


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch of time a job spent in one state (``end`` is clipped to the run's end)."""

    state: str
    start: float
    end: float
    device: str | None
    attempt: int
    reason: str

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(slots=True)
class Attempt:
    """One worker process: from its start on a device until it left the active states.

    ``ready`` is when the model had loaded (None if it never did); ``outcome``
    is the state the job went to next (``running`` if the run ended first).
    """

    job: str
    model: str
    input: str
    number: int
    device: str
    start: float
    ready: float | None
    end: float
    outcome: str
    reason: str
    load: Load | None = None
    failure: Failure | None = None
    release: Release | None = None
    lane: int = 0
    release_until: float | None = None
    """End of the drawn "memory not yet back" phase (None: nothing to draw)."""

    @property
    def loading_s(self) -> float:
        return max(0.0, (self.ready if self.ready is not None else self.end) - self.start)

    @property
    def processing_s(self) -> float:
        return 0.0 if self.ready is None else max(0.0, self.end - self.ready)

    @property
    def held_until(self) -> float:
        """When the device had this attempt's memory back (its end if never confirmed)."""
        return max(self.end, self.release.t) if self.release is not None else self.end


@dataclass(slots=True)
class Job:
    id: str
    model: str
    input: str
    audio_s: float = 0.0
    priority: int = 0
    submitted: float | None = None
    states: list[StateChange] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    reasons: list[ReasonChange] = field(default_factory=list)
    progress_s: float = 0.0
    intervals: list[Interval] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.states[-1].to_state if self.states else "pending"

    @property
    def first_start(self) -> float | None:
        return next((a.start for a in self.attempts), None)

    @property
    def wait_s(self) -> float | None:
        """Queue wait: from submission until its first worker started."""
        start = self.first_start
        if start is None or self.submitted is None:
            return None
        return max(0.0, start - self.submitted)


@dataclass(frozen=True, slots=True)
class DeviceSample:
    t: float
    total_mb: float
    free_mb: float
    ours_mb: float
    others_mb: float
    reserved_mb: float
    instances: int
    loading: int
    pending: int

    @property
    def free_shown_mb(self) -> float:
        """Free memory net of reservations: a reading still counts reserved memory as free."""
        return max(0.0, self.total_mb - self.others_mb - self.ours_mb - self.reserved_mb)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    kind: str


@dataclass(slots=True)
class Run:
    """A whole run; ``t0`` is the earliest moment seen, so report times start at zero."""

    path: Path
    name: str
    t0: float
    t_end: float
    ended: bool
    devices: list[DeviceInfo]
    settings: dict[str, Any]
    jobs: dict[str, Job]
    samples: dict[str, list[DeviceSample]]

    @property
    def wall_s(self) -> float:
        return max(0.0, self.t_end - self.t0)

    @property
    def attempts(self) -> list[Attempt]:
        return sorted((a for j in self.jobs.values() for a in j.attempts), key=lambda a: a.start)

    def device_ids(self) -> list[str]:
        """Every device seen: those announced at the start, then any only seen in use."""
        ids = [d.id for d in self.devices]
        for dev in [*self.samples, *(a.device for a in self.attempts)]:
            if dev not in ids:
                ids.append(dev)
        return ids
