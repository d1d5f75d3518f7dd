"""The simulation loop: fake GPUs, model instances, contention, growth and OOMs.

Everything physical lives here (how long things take, how memory grows,
what runs out); everything about *deciding* lives in the policies, which see
the world only through lagging device readings, exactly as a runtime would.
"""

from __future__ import annotations

import bisect
import heapq
import math
import statistics
from dataclasses import dataclass, field
from typing import Protocol

from vramscribe.core.footprints import builtin_estimate
from vramscribe.core.jobs import DEFAULT_PRIORITY, Job, JobState, fail, transition
from vramscribe.core.profiles import PROFILES, contention, growth, profile_for
from vramscribe.core.queue import PendingQueue
from vramscribe.core.retry import FailureKind, apply_failure
from vramscribe.core.settings import Settings
from vramscribe.devices.fake import FakeDevice
from vramscribe.errors import DeviceOutOfMemory
from vramscribe.sim.scenarios import GpuSpec, Scenario, SimJob

TICK_S = 1.0
EPS = 1e-9
LARGE_MODELS = frozenset({"large-v3"})
SMALL_MODELS = frozenset({"tiny", "base", "small"})


@dataclass(slots=True, eq=False)
class SimInstance:
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
    allocated_mb: float = 0.0
    done_s: float = 0.0
    processing_since: float = 0.0


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

    def rate_factor(self) -> float:
        """Per-instance share S(k)/k of solo speed for the instances now processing."""
        working = [i for i in self.instances if i.phase == "processing"]
        k = len(working)
        if k == 0:
            return 0.0
        s_max = self.spec.s_max or statistics.fmean(i.s_max for i in working)
        return contention(k, s_max) / k


@dataclass(frozen=True, slots=True)
class Admission:
    job_id: str
    gpu_id: str
    reserved_mb: float
    expected_end: float = 0.0


class Policy(Protocol):
    name: str

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

    @property
    def ratio_to_bound(self) -> float:
        return self.makespan_s / self.lower_bound_s if self.lower_bound_s else math.inf


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def lower_bound(scenario: Scenario, jobs: list[SimJob]) -> float:
    """No policy can finish sooner than this (see docs/simulator.md).

    Total solo work over the best aggregate throughput every GPU could give
    (S(k) at the most instances memory could ever hold, with the largest
    S_max of the mix), and never less than any single job run alone from its
    arrival, including the shortest process start and its load.
    """
    best_s_max = max(p.s_max for m in scenario.model_mix if (p := profile_for(m)))
    smallest = min(
        builtin_estimate((m, scenario.compute_type, 1, "cuda")) for m in scenario.model_mix
    )
    capacity = 0.0
    for gpu in scenario.gpus:
        room = gpu.total_mb - (gpu.foreign.min_mb if gpu.foreign else 0.0)
        k_max = max(1, int(room // smallest))
        capacity += contention(k_max, gpu.s_max or best_s_max) * gpu.speed_factor
    work = 0.0
    longest = 0.0
    fastest = max(g.speed_factor for g in scenario.gpus)
    for j in jobs:
        p = profile_for(j.model)
        assert p is not None
        work += j.audio_s / p.speed_x
        alone = scenario.startup_s[0] + p.load_s + j.audio_s / (p.speed_x * fastest)
        longest = max(longest, j.arrival + alone)
    return max(work / capacity, longest)


class Simulation:
    def __init__(self, scenario: Scenario, policy: Policy, settings: Settings | None = None):
        self.scenario = scenario
        self.policy = policy
        self.settings = settings or Settings()
        self.sim_jobs = scenario.jobs()
        self.by_id = {j.id: j for j in self.sim_jobs}
        horizon = max(j.arrival for j in self.sim_jobs) + 10 * 86400
        self.gpus = [
            SimGpu(
                spec,
                FakeDevice(
                    spec.id, spec.total_mb, spec.lag_s, scenario.foreign_script(spec, horizon)
                ),
            )
            for spec in scenario.gpus
        ]
        self.gpu_by_id = {g.id: g for g in self.gpus}
        self.jobs: dict[str, Job] = {}
        self.queue = PendingQueue(self.settings.aging_s_per_point)
        self.fifo: list[tuple[float, str]] = []
        self.first_start: dict[str, float] = {}
        self.oom_events = 0
        self.retries = 0
        self.model_loads = 0
        self.now = 0.0
        self._next_pid = 1000
        self._arrivals = sorted(self.sim_jobs, key=lambda j: (j.arrival, j.id))
        self._arrival_pos = 0
        self._wakeups: list[float] = []
        self._rejected = 0

    # -- queue helpers used by policies --------------------------------------
    def pending_fifo(self) -> list[Job]:
        """Pending jobs in arrival order (for the plain-loop baselines)."""
        return [self.jobs[jid] for _, jid in self.fifo]

    def reject(self, job_id: str, reason: str) -> None:
        """The policy says this job can never run: it fails now, with the reason."""
        job = self.jobs[job_id]
        self._dequeue(job)
        fail(job, self.now, reason)
        self._rejected += 1

    def instances(self) -> list[SimInstance]:
        return [i for g in self.gpus for i in g.instances]

    # -- the loop --------------------------------------------------------------
    def run(self, max_time_s: float = 30 * 86400) -> SimResult:
        next_tick = 0.0
        unfinished = len(self.sim_jobs)
        while unfinished and self.now <= max_time_s:
            now = self.now
            self._arrive(now)
            for gpu in self.gpus:
                gpu.device.advance(now)
            unfinished -= self._step_instances(now)
            before = self._rejected
            self._admit(now)
            unfinished -= self._rejected - before
            if now >= next_tick:
                next_tick = now + TICK_S
            nxt = self._next_event(next_tick)
            self._advance(nxt)
        return self._result(unfinished)

    def _arrive(self, now: float) -> None:
        while (
            self._arrival_pos < len(self._arrivals)
            and self._arrivals[self._arrival_pos].arrival <= now + EPS
        ):
            sj = self._arrivals[self._arrival_pos]
            self._arrival_pos += 1
            job = Job(
                sj.id,
                sj.model,
                sj.audio_s,
                sj.priority,
                sj.arrival,
                compute_type=self.scenario.compute_type,
            )
            self.jobs[job.id] = job
            self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        self.queue.push(job)
        bisect.insort(self.fifo, (job.submitted_at, job.id))

    def _dequeue(self, job: Job) -> None:
        self.queue.remove(job.id)
        idx = bisect.bisect_left(self.fifo, (job.submitted_at, job.id))
        del self.fifo[idx]

    def _step_instances(self, now: float) -> int:
        """Apply phase ends, completions and growth; returns jobs that became final."""
        finished = 0
        for gpu in self.gpus:
            for inst in list(gpu.instances):
                if inst.phase == "starting" and inst.phase_end <= now + EPS:
                    try:
                        gpu.device.allocate(inst.pid, inst.base_mb, now)
                        inst.allocated_mb = inst.base_mb
                    except DeviceOutOfMemory as exc:
                        finished += self._fail(inst, now, FailureKind.OOM, str(exc))
                        continue
                    inst.phase = "loading"
                    self.model_loads += 1
                    p = profile_for(inst.job.model)
                    assert p is not None
                    inst.phase_end = now + p.load_s
                elif inst.phase == "loading" and inst.phase_end <= now + EPS:
                    inst.phase = "processing"
                    inst.processing_since = now
                    transition(inst.job, JobState.PROCESSING, now, "model loaded")
                if inst.phase == "processing":
                    if inst.done_s >= inst.job.audio_s - 1e-6:
                        finished += self._complete(inst, now)
                        continue
                    want = inst.base_mb * growth(inst.done_s)
                    if want - inst.allocated_mb > 1.0:
                        try:
                            gpu.device.allocate(inst.pid, want - inst.allocated_mb, now)
                            inst.allocated_mb = want
                        except DeviceOutOfMemory as exc:
                            finished += self._fail(inst, now, FailureKind.OOM, str(exc))
        return finished

    def _complete(self, inst: SimInstance, now: float) -> int:
        inst.gpu.device.release(inst.pid, now)
        inst.gpu.instances.remove(inst)
        transition(inst.job, JobState.COMPLETED, now, "transcribed")
        self.policy.on_finished(inst, now, True)
        return 1

    def _fail(self, inst: SimInstance, now: float, kind: FailureKind, detail: str) -> int:
        inst.gpu.device.release(inst.pid, now)
        inst.gpu.instances.remove(inst)
        if kind is FailureKind.OOM:
            self.oom_events += 1
        job = inst.job
        granted = max(inst.reserved_mb, inst.allocated_mb)
        outcome = apply_failure(job, kind, detail, granted, now, self.settings)
        if outcome.cooldown_until is not None:
            inst.gpu.cooldown_until = outcome.cooldown_until
        self.policy.on_finished(inst, now, False)
        if not outcome.retry:
            return 1
        self.retries += 1
        heapq.heappush(self._wakeups, job.not_before)
        self._enqueue(job)
        return 0

    def _admit(self, now: float) -> None:
        for adm in self.policy.admit(now, self):
            job = self.jobs[adm.job_id]
            gpu = self.gpu_by_id[adm.gpu_id]
            sj = self.by_id[job.id]
            p = profile_for(job.model)
            assert p is not None
            self._dequeue(job)
            job.attempts += 1
            transition(job, JobState.LOADING, now, f"admitted on {gpu.id}")
            self.first_start.setdefault(job.id, now)
            self._next_pid += 1
            true_mb = (
                builtin_estimate((job.model, job.compute_type, job.batch_size, "cuda"))
                * sj.mem_factor
            )
            gpu.instances.append(
                SimInstance(
                    job=job,
                    sim_job=sj,
                    gpu=gpu,
                    pid=self._next_pid,
                    phase="starting",
                    phase_end=now + sj.startup_s,
                    reserved_mb=adm.reserved_mb,
                    base_mb=true_mb,
                    speed=p.speed_x * gpu.spec.speed_factor,
                    s_max=p.s_max,
                    expected_end=adm.expected_end,
                )
            )

    def _next_event(self, next_tick: float) -> float:
        cands = [next_tick]
        if self._arrival_pos < len(self._arrivals):
            cands.append(self._arrivals[self._arrival_pos].arrival)
        while self._wakeups and self._wakeups[0] <= self.now:
            heapq.heappop(self._wakeups)
        if self._wakeups:
            cands.append(self._wakeups[0])
        for gpu in self.gpus:
            t = gpu.device.next_script_time()
            if t is not None:
                cands.append(t)
            factor = gpu.rate_factor()
            for inst in gpu.instances:
                if inst.phase == "processing":
                    rate = inst.speed * factor
                    cands.append(self.now + (inst.job.audio_s - inst.done_s) / rate)
                else:
                    cands.append(inst.phase_end)
        return max(self.now + 1e-6, min(cands))

    def _advance(self, to: float) -> None:
        dt = to - self.now
        for gpu in self.gpus:
            factor = gpu.rate_factor()
            for inst in gpu.instances:
                if inst.phase == "processing":
                    inst.done_s = min(inst.job.audio_s, inst.done_s + dt * inst.speed * factor)
            gpu.mem_integral += dt * gpu.device.used_mb / gpu.device.total_mb
        self.now = to

    def _result(self, unfinished: int) -> SimResult:
        jobs = list(self.jobs.values())
        done = [j for j in jobs if j.state is JobState.COMPLETED]
        failed = [j for j in jobs if j.state is JobState.FAILED]
        makespan = self.now

        def wait(j: Job) -> float:
            return self.first_start.get(j.id, makespan) - j.submitted_at

        started = [j for j in jobs if j.id in self.first_start]
        waits_high = [wait(j) for j in started if j.priority > DEFAULT_PRIORITY]
        waits_norm = [wait(j) for j in started if j.priority <= DEFAULT_PRIORITY]
        large = [wait(j) for j in jobs if j.model in LARGE_MODELS]
        small = [wait(j) for j in jobs if j.model in SMALL_MODELS]
        starvation = (max(large) / max(max(small), 1e-9)) if large and small else 0.0
        util = statistics.fmean(g.mem_integral for g in self.gpus) / makespan if makespan else 0.0
        return SimResult(
            scenario=self.scenario.name,
            policy=self.policy.name,
            makespan_s=makespan,
            throughput_x=sum(j.audio_s for j in done) / makespan if makespan else 0.0,
            lower_bound_s=lower_bound(self.scenario, self.sim_jobs),
            oom_events=self.oom_events + sum(g.device.foreign_oom_events for g in self.gpus),
            foreign_oom_events=sum(g.device.foreign_oom_events for g in self.gpus),
            completed=len(done),
            failed=len(failed),
            unfinished=unfinished,
            retries=self.retries,
            p50_wait_high_s=percentile(waits_high, 0.50),
            p95_wait_high_s=percentile(waits_high, 0.95),
            p50_wait_normal_s=percentile(waits_norm, 0.50),
            p95_wait_normal_s=percentile(waits_norm, 0.95),
            starvation_ratio=starvation,
            model_loads=self.model_loads,
            mean_mem_util=util,
        )


__all__ = ["PROFILES", "Admission", "Policy", "SimGpu", "SimInstance", "SimResult", "Simulation"]
