"""The device protocol: one reading of total, free and per-process memory.

NVML GPUs, the CPU (host RAM) and the fakes all answer the same question, so
the runtime and the planner never care which one they talk to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Reading:
    """One device reading, as NVML would give it (MB, per process id)."""

    time: float
    total_mb: float
    free_mb: float
    processes: dict[int, float]

    @property
    def used_mb(self) -> float:
        return self.total_mb - self.free_mb


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

    def read(self, now: float) -> Reading:
        """Current memory; ``now`` is the caller's clock (fakes apply their lag to it)."""
        ...
