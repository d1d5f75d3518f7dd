"""The device protocol: one reading of total, free and per-process memory.

NVML GPUs, the CPU (host RAM) and the fakes all answer the same question, so
the runtime and the planner never care which one they talk to.
"""

from __future__ import annotations

from typing import Protocol

from vramscribe.core.snapshot import Reading

__all__ = ["Device", "Reading"]


class Device(Protocol):
    """A place where model instances run and take memory."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str:
        """``cuda``, ``cpu`` or ``fake``: the footprint table's device kind."""
        ...

    @property
    def max_instances(self) -> int | None:
        """A device's own cap on instances (the CPU's cores), or None."""
        ...

    @property
    def reading_lag_s(self) -> float:
        """How long an allocation may take to show in a reading (NVML: about 0.5 s)."""
        ...

    def read(self, now: float) -> Reading:
        """Current memory; ``now`` is the caller's clock (fakes apply their lag to it)."""
        ...

    def track(self, pid: int) -> None:
        """A worker of ours started: devices that measure per process (the CPU) follow it."""
        ...

    def untrack(self, pid: int) -> None:
        """A worker's memory is confirmed back: stop following its process."""
        ...
