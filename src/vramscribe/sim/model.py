"""What the simulator and its policies share: instances, GPUs, admissions, results."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vramscribe.core.jobs import Job
from vramscribe.core.profiles import shared_speeds
from vramscribe.devices.fake import FakeDevice
from vramscribe.sim.scenarios import GpuSpec, SimJob

if TYPE_CHECKING:
    from vramscribe.sim.simulator import Simulation

PHASES = ("starting", "loading", "processing", "idle")


@dataclass(slots=True, eq=False)
class SimInstance:
    """One model instance (one process) on a simulated GPU.

    ``phase`` goes ``starting`` (process start: interpreter, imports, CUDA
    init) -> ``loading`` (the model load; its memory is allocated at the start
    of this phase) -> ``processing`` -> ``idle`` (loaded, holding ``loaded_mb``,
    waiting for another job of the same model and compute type) ->
    ``processing`` ... until released. ``job`` is the job it runs or, while
    idle, the last one it ran. ``speed`` is its solo speed at batch size 1 on
    this GPU; ``gain`` the batch gain of the job it runs.
    """

    job: Job
    sim_job: SimJob
    gpu: SimGpu
    pid: int
    phase: str
    phase_end: float
    reserved_mb: float
    base_mb: float
    speed: float
    s_max: float
    expected_end: float
    model: str = ""
    compute_type: str = ""
    batch_size: int = 1
    gain: float = 1.0
    loaded_mb: float = 0.0
    mem_factor: float = 1.0
    allocated_mb: float = 0.0
    done_s: float = 0.0
    processing_since: float = 0.0
    idle_since: float | None = None
    jobs_served: int = 0
    started_at: float = 0.0

    @property
    def is_idle(self) -> bool:
        return self.phase == "idle"


@dataclass(slots=True, eq=False)
class SimGpu:
    spec: GpuSpec
    device: FakeDevice
    instances: list[SimInstance] = field(default_factory=list)
    cooldown_until: float = 0.0
    mem_integral: float = 0.0

    @property
    def id(self) -> str:
        return self.spec.id

    def speeds(self) -> list[tuple[SimInstance, float]]:
        """Each processing instance with its speed now, in audio seconds per second."""
        working = [i for i in self.instances if i.phase == "processing"]
        if not working:
            return []
        s_max = self.spec.s_max or statistics.fmean(i.s_max for i in working)
        factors = shared_speeds([i.gain for i in working], s_max)
        return [(i, i.speed * f) for i, f in zip(working, factors, strict=True)]

    def idle(self) -> list[SimInstance]:
        return [i for i in self.instances if i.phase == "idle"]


@dataclass(frozen=True, slots=True)
class Admission:
    """Start ``job_id`` on ``gpu_id``: in a new instance, or on the idle ``instance_pid``."""

    job_id: str
    gpu_id: str
    reserved_mb: float
    expected_end: float = 0.0
    instance_pid: int | None = None
    batch_size: int = 1


class Policy(Protocol):
    """An admission rule. ``reuse``: keep instances loaded after their job (warm)."""

    name: str
    reuse: bool

    def admit(self, now: float, sim: Simulation) -> list[Admission]: ...

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None: ...


@dataclass(slots=True)
class SimResult:
    scenario: str
    policy: str
    makespan_s: float
    throughput_x: float
    lower_bound_s: float
    oom_events: int
    foreign_oom_events: int
    completed: int
    failed: int
    unfinished: int
    retries: int
    p50_wait_high_s: float
    p95_wait_high_s: float
    p50_wait_normal_s: float
    p95_wait_normal_s: float
    starvation_ratio: float
    model_loads: int
    mean_mem_util: float
    rejected: int = 0
    warm_starts: int = 0
    batch_clamped: int = 0
    seed: int = 0
    gave_up: int = 0
    priority_met: bool = True

    @property
    def ratio_to_bound(self) -> float:
        return self.makespan_s / self.lower_bound_s if self.lower_bound_s else math.inf

    @property
    def ok(self) -> bool:
        """Every job reached a final state and nothing ran out of memory."""
        return self.unfinished == 0 and self.oom_events == 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]
