"""Small worlds and scripted policies for simulator tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vramscribe.core.jobs import JobState
from vramscribe.sim.model import Admission, SimInstance
from vramscribe.sim.neighbours import Neighbour
from vramscribe.sim.scenarios import GIB_MB, GpuSpec, Scenario, SimJob
from vramscribe.sim.simulator import Simulation


def job(
    n: int,
    model: str = "tiny",
    audio_s: float = 60.0,
    arrival: float = 0.0,
    priority: int = 50,
    startup_s: float = 2.0,
    mem_factor: float = 1.0,
    compute_type: str = "float16",
) -> SimJob:
    return SimJob(
        f"j{n:05d}", model, audio_s, priority, arrival, startup_s, mem_factor, compute_type
    )


def world(
    jobs: list[SimJob],
    total_gib: float = 80.0,
    foreign: Neighbour | None = None,
    gpus: int = 1,
    s_max: float | None = None,
    speed_factor: float = 1.0,
    lag_s: float = 0.5,
) -> Scenario:
    specs = tuple(
        GpuSpec(f"cuda:{n}", total_gib * GIB_MB, lag_s, s_max, speed_factor, foreign)
        for n in range(gpus)
    )
    return Scenario(name="test", seed=1, gpus=specs, fixed_jobs=tuple(jobs))


@dataclass
class Scripted:
    """A policy whose ``admit`` is a test's function; it records every ``on_finished``."""

    decide: Callable[[float, Simulation], list[Admission]]
    reuse: bool = True
    name: str = "scripted"
    finished: list[tuple[str, float, bool, str]] = field(default_factory=list)

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        return self.decide(now, sim)

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        self.finished.append((inst.job.id, now, ok, inst.phase))


@dataclass
class PlanPolicy:
    """Runs jobs in a fixed order: each step is (job id, batch size, wait for the previous).

    A step that waits starts when the previous step's job is done, on an idle
    instance of the same model and compute type if there is one; a step that
    does not wait starts as soon as its job has arrived (and is not delayed).
    """

    steps: list[tuple[str, int, bool]]
    reuse: bool = True
    name: str = "plan"
    pos: int = 0

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        out: list[Admission] = []
        while self.pos < len(self.steps):
            job_id, batch, after = self.steps[self.pos]
            job = sim.jobs.get(job_id)
            if job is None or job.state is not JobState.PENDING or job.not_before > now:
                break
            if after and self.pos > 0:
                prev = sim.jobs[self.steps[self.pos - 1][0]]
                if prev.state is not JobState.COMPLETED:
                    break
            idle = [
                i
                for i in sim.instances()
                if i.is_idle and (i.model, i.compute_type) == (job.model, job.compute_type)
            ]
            pid = idle[0].pid if idle and after else None
            gpu = idle[0].gpu.id if pid is not None else sim.gpus[0].id
            out.append(Admission(job_id, gpu, 0.0, instance_pid=pid, batch_size=batch))
            self.pos += 1
        return out

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        return None
