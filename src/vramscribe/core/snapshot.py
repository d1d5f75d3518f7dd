"""What the planner sees of the world: device readings and our instances.

Plain frozen values, built by the runtime (from NVML, psutil or a fake) or by
the simulator, so the planner never touches a device itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramscribe.core.jobs import JobState


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


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One reading of one device.

    ``foreign_peak_mb`` is the most memory processes that are not ours used in
    a recent window (None: unknown); the planner keeps the difference to the
    current foreign use free, so a neighbour that grows back finds its memory.
    ``cooldown_until`` stops admissions after an out-of-memory failure.
    """

    id: str
    kind: str
    total_mb: float
    free_mb: float
    max_instances: int | None = None
    foreign_peak_mb: float | None = None
    cooldown_until: float = 0.0
    s_max: float | None = None
    """How far concurrent instances scale on this device, if known (a T4: about 1.1);
    None: the models' own figures."""
    reserve_mb: float = 0.0
    """Memory the user leaves to others here: never handed out, like the margin."""
    fresh: bool = True
    """False until a reading taken the device's reading lag after the start exists: an
    earlier one may predate a neighbour that started with us, so nothing is admitted."""
    memory_limit_bytes: int | None = None
    """The most our instances may hold here, reserved or observed (``--memory-limit``)."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One of our model instances as the runtime last saw it.

    ``reserved_mb`` is the expected peak the planner granted; ``observed_mb``
    what the device attributes to the instance's process now (0 while it starts).
    ``expected_end`` is when the runtime expects the memory back. A warm
    instance between jobs has ``idle_since`` set and can take a job whose
    ``reuse_key`` equals its ``key``; ``starting`` marks a process that has
    not begun loading its model yet (the load cap counts model loads only).
    """

    job_id: str
    device_id: str
    state: JobState
    reserved_mb: float
    observed_mb: float
    expected_end: float
    priority: int = 0
    instance_id: str = ""
    key: str = ""
    idle_since: float | None = None
    starting: bool = False
    batch_size: int = 1
    """The batch size of the job it runs: how much of the device it keeps busy."""

    @property
    def iid(self) -> str:
        return self.instance_id or self.job_id

    @property
    def is_loading(self) -> bool:
        return self.state is JobState.LOADING and not self.starting and self.idle_since is None

    @property
    def outstanding_mb(self) -> float:
        return max(0.0, self.reserved_mb - self.observed_mb)
