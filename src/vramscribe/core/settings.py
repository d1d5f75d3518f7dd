"""Scheduler settings: one frozen dataclass, one docstring line per field."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramscribe.core.limits import MemoryLimits


@dataclass(frozen=True, slots=True)
class Settings:
    safety_margin: float = 0.10
    """Fraction of each device's total memory never handed out (readings lag, peaks jitter)."""

    max_instances_per_device: int = 8
    """Instances on one device; compute saturates after 2-3, memory usually binds first."""

    max_instances_total: int = 64
    """Instances across all devices (host RAM, file handles, CPU for decoding)."""

    max_loads_per_device: int = 2
    """Concurrent model loads on one device; a throughput knob, not a safety net."""

    aging_s_per_point: float = 300.0
    """Seconds of waiting that raise a job's effective priority by one point."""

    backfill: bool = True
    """Let later jobs start while the head job waits, if they do not delay it."""

    backfill_depth: int = 500
    """Jobs one call looks at after the first that cannot start, on every path (waiting,
    held back, retrying, rejected); the rest share a reason. Bounds a call's cost, like
    Slurm's ``bf_max_job_test``; 500 keeps a call under 5 ms at 50,000 x 16."""

    max_attempts: int = 3
    """Attempts before a retryable failure becomes final."""

    backoff_base_s: float = 2.0
    """Delay before the first retry; doubles with each attempt."""

    backoff_max_s: float = 60.0
    """Upper bound on the retry delay."""

    oom_estimate_factor: float = 1.25
    """After an out-of-memory failure the job's estimate is raised by this factor."""

    oom_cooldown_s: float = 5.0
    """After an out-of-memory failure the device admits nothing for this long."""

    reuse: bool = True
    """A loaded instance takes the next job of the same model (False: one instance per file)."""

    keep_alive_s: float = 0.0
    """How long an idle instance waits for work before it is released (a batch: 0, at once)."""

    max_jobs_per_instance: int = 200
    """Jobs one instance serves before it is replaced (bounds leaks and engine caches)."""

    max_wait_for_memory_s: float = 300.0
    """How long a job may stay blocked by memory other processes hold (it fits on an empty
    device, on none beside them) before it fails with the reason; waits for our own jobs
    do not count (the service: 30 min)."""

    batch_lookahead: int = 8
    """Pending jobs weighed when choosing a batch size (memory a batch takes from them)."""

    # -- limits users set ----------------------------------------------------------------
    limits: MemoryLimits = field(default_factory=MemoryLimits)
    """Per device: the most vramscribe may hold, and memory always left to others."""

    # -- the fallback ladder ---------------------------------------------------------------
    fallback: tuple[str, ...] = ()
    """Opt-in rungs after out-of-memory failures, beyond a smaller batch: int8, cpu."""

    def __post_init__(self) -> None:
        unknown = [r for r in self.fallback if r not in ("int8", "cpu")]
        if unknown:
            raise ValueError(f"fallback rungs are int8 and cpu, got {', '.join(unknown)}")
        if not 0.0 <= self.safety_margin < 1.0:
            raise ValueError(f"safety_margin must be in [0, 1), got {self.safety_margin}")
        for name in ("max_instances_per_device", "max_instances_total", "max_loads_per_device"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_jobs_per_instance < 1:
            raise ValueError("max_jobs_per_instance must be at least 1")
        if self.max_wait_for_memory_s < 0:
            raise ValueError("max_wait_for_memory_s must not be negative")
        if self.keep_alive_s < 0:
            raise ValueError("keep_alive_s must not be negative")
        if self.backfill_depth < 1:
            raise ValueError("backfill_depth must be at least 1")
        if self.aging_s_per_point <= 0:
            raise ValueError("aging_s_per_point must be positive")
