"""The numbers a report is made of: per model, per device, per pending reason, overall."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Per model; waits and loads in seconds, speed in x real time, memory in MB."""

    model: str
    jobs: int
    completed: int
    audio_s: float
    wait_p50: float | None
    wait_p95: float | None
    load_p50: float | None
    load_p95: float | None
    ready_p50: float | None
    speed_x: float | None
    peak_mb: float | None


@dataclass(frozen=True, slots=True)
class TimeSplit:
    loading: float = 0.0
    transcribing: float = 0.0
    held_back: float = 0.0
    idle: float = 0.0

    @property
    def total(self) -> float:
        return self.loading + self.transcribing + self.held_back + self.idle

    def share(self, part: str) -> float:
        total = self.total
        return float(getattr(self, part)) / total if total > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """``memory_used`` counts ours, reserved and other processes; shares are of total memory."""

    id: str
    kind: str
    samples: int
    memory_used: float | None
    memory_ours: float | None
    others_share: float | None
    mean_instances: float
    max_instances: int
    time: TimeSplit
    loads: int
    reloads: int
    ooms: int
    idle_while_waiting_s: float
    waited_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReasonStats:
    """A normalised pending reason: distinct jobs, reason changes, and job-seconds under it."""

    reason: str
    jobs: int
    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    path: Path
    ended: bool
    wall_s: float
    jobs: int
    completed: int
    failed: int
    cancelled: int
    unfinished: int
    audio_s: float
    speed_x: float | None
    models: tuple[ModelStats, ...]
    devices: tuple[DeviceStats, ...]
    reasons: tuple[ReasonStats, ...]
    failures: Mapping[str, int]
    ooms: int
    retries: int
    loads: int
    reloads: int
    release_p50: float | None
    release_max: float | None
    memory_wait_p50: float | None
    waits: tuple[float, ...]
    load_times: tuple[float, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[str, ...] = ()
    warm_starts: int = 0
    """Attempts that ran on an already loaded instance: loads avoided."""

    @property
    def time(self) -> TimeSplit:
        """Device time of all devices together."""
        return TimeSplit(
            sum(d.time.loading for d in self.devices),
            sum(d.time.transcribing for d in self.devices),
            sum(d.time.held_back for d in self.devices),
            sum(d.time.idle for d in self.devices),
        )


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
