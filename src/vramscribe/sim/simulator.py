"""The simulation loop: fake GPUs, model instances, contention, growth and OOMs.

Everything physical lives here (how long things take, how memory grows,
what runs out); everything about *deciding* lives in the policies, which see
the world only through lagging device readings, exactly as a runtime would.

An instance starts (process start), loads its model, and transcribes one job
at a time. A policy with ``reuse`` keeps it loaded and idle after a clean job,
to take another job of the same model and compute type with no start and no
load, until the policy releases it; other policies' instances exit with their
job. Any failure ends the instance. A job runs at the batch size its admission
asks for, capped at ``max_batch`` of its audio (the simulator clamps and
counts); docs/simulator.md describes the speed and memory this gives.
"""

from __future__ import annotations

import bisect
import heapq
import math

from vramscribe.core.footprints import builtin_estimate
from vramscribe.core.jobs import Job, JobState, fail, transition
from vramscribe.core.profiles import PROFILES, batch_gain, growth, max_batch, profile_for
from vramscribe.core.queue import PendingQueue
from vramscribe.core.retry import FailureKind, apply_failure
from vramscribe.core.settings import Settings
from vramscribe.devices.fake import FakeDevice
from vramscribe.errors import DeviceOutOfMemory
from vramscribe.sim.bound import lower_bound
from vramscribe.sim.model import Admission, Policy, SimGpu, SimInstance, SimResult, percentile
from vramscribe.sim.results import summarize
from vramscribe.sim.scenarios import Scenario

TICK_S = 1.0
EPS = 1e-9
DEFAULT_MAX_TIME_S = 30 * 86400.0


class Simulation:
    def __init__(self, scenario: Scenario, policy: Policy, settings: Settings | None = None):
        self.scenario = scenario
        self.policy = policy
        self.settings = settings or Settings()
        self.sim_jobs = scenario.jobs()
        self.by_id = {j.id: j for j in self.sim_jobs}
        horizon = max((j.arrival for j in self.sim_jobs), default=0.0) + 10 * 86400
        self.gpus = []
        for spec in scenario.gpus:
            # A neighbour's level at t=0 was there before we came: readings at t=0 show it.
            script = [
                (t if t > 0 else -spec.lag_s - 1.0, mb)
                for t, mb in scenario.foreign_script(spec, horizon)
            ]
            device = FakeDevice(spec.id, spec.total_mb, spec.lag_s, script)
            self.gpus.append(SimGpu(spec, device))
        self.gpu_by_id = {g.id: g for g in self.gpus}
        self.jobs: dict[str, Job] = {}
        self.queue = PendingQueue(self.settings.aging_s_per_point)
        self.fifo: list[tuple[float, str]] = []
        self.first_start: dict[str, float] = {}
        self.rejected: set[str] = set()
        self.given_up: set[str] = set()
        self.oom_events = 0
        self.retries = 0
        self.model_loads = 0
        self.warm_starts = 0
        self.batch_clamped = 0
        self.final = 0
        self.now = 0.0
        self._next_pid = 1000
        self._arrivals = sorted(self.sim_jobs, key=lambda j: (j.arrival, j.id))
        self._arrival_pos = 0
        self._wakeups: list[float] = []

    # -- what policies may call ----------------------------------------------------
    def pending_fifo(self) -> list[Job]:
        """Pending jobs in arrival order (for the plain-loop baselines)."""
        return [self.jobs[jid] for _, jid in self.fifo]

    def reject(self, job_id: str, reason: str) -> None:
        """The policy says this job can never run: it fails now, with the reason."""
        job = self.jobs[job_id]
        self._dequeue(job)
        fail(job, self.now, reason)
        self.rejected.add(job_id)
        self.final += 1

    def give_up(self, job_id: str, reason: str) -> None:
        """The policy stops waiting for this job (memory others hold): it fails now."""
        job = self.jobs[job_id]
        self._dequeue(job)
        fail(job, self.now, reason)
        self.given_up.add(job_id)
        self.final += 1

    def instances(self) -> list[SimInstance]:
        return [i for g in self.gpus for i in g.instances]

    def release(self, pid: int) -> None:
        """End the idle instance ``pid``: its process exits and its memory is freed."""
        inst = self._instance(pid)
        if not inst.is_idle:
            raise ValueError(f"instance {pid} is {inst.phase}, only an idle one can be released")
        self._end(inst, self.now)

    # -- the loop ------------------------------------------------------------------
    def run(self, max_time_s: float = DEFAULT_MAX_TIME_S) -> SimResult:
        """Run until every job is final or ``max_time_s``; jobs left then are unfinished."""
        next_tick = 0.0
        total = len(self.sim_jobs)
        while True:
            now = self.now
            self._arrive(now)
            for gpu in self.gpus:
                gpu.device.advance(now)
            self._step_instances(now)
            self._admit(now)
            if self.final >= total or now >= max_time_s:
                break
            if now >= next_tick:
                next_tick = now + TICK_S
            self._advance(min(self._next_event(next_tick), max_time_s))
        bound = lower_bound(self.scenario, self.sim_jobs, self.settings)
        return summarize(self, total - self.final, bound)

    def _arrive(self, now: float) -> None:
        while (
            self._arrival_pos < len(self._arrivals)
            and self._arrivals[self._arrival_pos].arrival <= now + EPS
        ):
            sj = self._arrivals[self._arrival_pos]
            self._arrival_pos += 1
            # Batch size "auto": each policy picks its own (the admission says which).
            job = Job(
                sj.id,
                sj.model,
                sj.audio_s,
                sj.priority,
                sj.arrival,
                compute_type=sj.compute_type,
                batch_size=0,
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

    def _instance(self, pid: int) -> SimInstance:
        for inst in self.instances():
            if inst.pid == pid:
                return inst
        raise ValueError(f"no instance {pid}")

    # -- physics -------------------------------------------------------------------
    def _step_instances(self, now: float) -> None:
        """Apply phase ends, completions and growth."""
        for gpu in self.gpus:
            for inst in list(gpu.instances):
                if inst.phase == "starting" and inst.phase_end <= now + EPS:
                    try:
                        gpu.device.allocate(inst.pid, inst.base_mb, now)
                        inst.allocated_mb = inst.base_mb
                    except DeviceOutOfMemory as exc:
                        self._fail(inst, now, FailureKind.OOM, str(exc))
                        continue
                    inst.phase = "loading"
                    self.model_loads += 1
                    p = profile_for(inst.model)
                    assert p is not None
                    inst.phase_end = now + p.load_s
                elif inst.phase == "loading" and inst.phase_end <= now + EPS:
                    inst.phase = "processing"
                    inst.processing_since = now
                    transition(inst.job, JobState.PROCESSING, now, "model loaded")
                if inst.phase == "processing":
                    if inst.done_s >= inst.job.audio_s - 1e-6:
                        self._complete(inst, now)
                        continue
                    want = inst.base_mb * growth(inst.done_s)
                    if want - inst.allocated_mb > 1.0:
                        try:
                            gpu.device.allocate(inst.pid, want - inst.allocated_mb, now)
                            inst.allocated_mb = want
                        except DeviceOutOfMemory as exc:
                            self._fail(inst, now, FailureKind.OOM, str(exc))

    def _end(self, inst: SimInstance, now: float) -> None:
        inst.gpu.device.release(inst.pid, now)
        inst.gpu.instances.remove(inst)

    def _complete(self, inst: SimInstance, now: float) -> None:
        transition(inst.job, JobState.COMPLETED, now, "transcribed")
        self.final += 1
        if not self.policy.reuse:
            self._end(inst, now)
            self.policy.on_finished(inst, now, True)
            return
        # Back to its loaded size: the batch slots and the growth of this file are freed.
        device = inst.gpu.device
        device.release(inst.pid, now)
        device.allocate(inst.pid, inst.loaded_mb, now)
        inst.allocated_mb = inst.loaded_mb
        inst.phase = "idle"
        inst.phase_end = math.inf
        inst.idle_since = now
        self.policy.on_finished(inst, now, True)

    def _fail(self, inst: SimInstance, now: float, kind: FailureKind, detail: str) -> None:
        self._end(inst, now)
        if kind is FailureKind.OOM:
            self.oom_events += 1
        job = inst.job
        granted = max(inst.reserved_mb, inst.allocated_mb)
        outcome = apply_failure(job, kind, detail, granted, now, self.settings)
        if outcome.cooldown_until is not None:
            inst.gpu.cooldown_until = outcome.cooldown_until
        self.policy.on_finished(inst, now, False)
        if not outcome.retry:
            self.final += 1
            return
        self.retries += 1
        heapq.heappush(self._wakeups, job.not_before)
        self._enqueue(job)

    # -- admissions ----------------------------------------------------------------
    def _admit(self, now: float) -> None:
        for adm in self.policy.admit(now, self):
            job = self.jobs[adm.job_id]
            if job.state is not JobState.PENDING:
                raise ValueError(f"{self.policy.name} admitted job {job.id} ({job.state.value})")
            gpu = self.gpu_by_id[adm.gpu_id]
            batch = max(1, adm.batch_size)
            cap = max_batch(job.audio_s)
            if batch > cap:
                self.batch_clamped += 1
                batch = cap
            if adm.instance_pid is not None:
                inst = self._warm(adm, job, gpu)
            else:
                self._check_caps(gpu)
                inst = self._fresh(adm, job, gpu)
            self._dequeue(job)
            job.attempts += 1
            job.batch_size = batch  # what it ran at (a retry keeps it)
            self.first_start.setdefault(job.id, now)
            inst.job, inst.sim_job = job, self.by_id[job.id]
            inst.reserved_mb, inst.expected_end = adm.reserved_mb, adm.expected_end
            inst.batch_size, inst.gain = batch, batch_gain(batch, "cuda")
            inst.base_mb = inst.mem_factor * builtin_estimate(
                (job.model, job.compute_type, batch, "cuda")
            )
            inst.jobs_served += 1
            if inst.phase == "starting":
                transition(job, JobState.LOADING, now, f"admitted on {gpu.id}")
            else:
                self._resume(inst, now)

    def _warm(self, adm: Admission, job: Job, gpu: SimGpu) -> SimInstance:
        assert adm.instance_pid is not None
        inst = self._instance(adm.instance_pid)
        if inst.gpu is not gpu or not inst.is_idle:
            raise ValueError(
                f"instance {inst.pid} is {inst.phase} on {inst.gpu.id}, not idle on {gpu.id}"
            )
        if (inst.model, inst.compute_type) != (job.model, job.compute_type):
            raise ValueError(
                f"instance {inst.pid} holds {inst.model} {inst.compute_type}, "
                f"job {job.id} needs {job.model} {job.compute_type}"
            )
        return inst

    def _resume(self, inst: SimInstance, now: float) -> None:
        """A warm instance takes its job: no start, no load; only the batch slots to allocate."""
        transition(inst.job, JobState.PROCESSING, now, f"on warm instance {inst.pid}")
        self.warm_starts += 1
        inst.phase, inst.phase_end = "processing", math.inf
        inst.processing_since, inst.idle_since, inst.done_s = now, None, 0.0
        extra = inst.base_mb - inst.allocated_mb
        if extra > 0:
            try:
                inst.gpu.device.allocate(inst.pid, extra, now)
                inst.allocated_mb = inst.base_mb
            except DeviceOutOfMemory as exc:
                self._fail(inst, now, FailureKind.OOM, str(exc))

    def _fresh(self, adm: Admission, job: Job, gpu: SimGpu) -> SimInstance:
        sj = self.by_id[job.id]
        p = profile_for(job.model)
        assert p is not None
        self._next_pid += 1
        inst = SimInstance(
            job=job,
            sim_job=sj,
            gpu=gpu,
            pid=self._next_pid,
            phase="starting",
            phase_end=self.now + sj.startup_s,
            reserved_mb=adm.reserved_mb,
            base_mb=0.0,
            speed=p.speed_x * gpu.spec.speed_factor,
            s_max=p.s_max,
            expected_end=adm.expected_end,
            model=job.model,
            compute_type=job.compute_type,
            loaded_mb=sj.mem_factor * builtin_estimate((job.model, job.compute_type, 1, "cuda")),
            mem_factor=sj.mem_factor,
            started_at=self.now,
        )
        gpu.instances.append(inst)
        return inst

    def _check_caps(self, gpu: SimGpu) -> None:
        per_device = self.settings.max_instances_per_device
        total = self.settings.max_instances_total
        if len(gpu.instances) >= per_device or len(self.instances()) >= total:
            raise ValueError(
                f"{self.policy.name} exceeds the instance caps ({per_device} per device, "
                f"{total} in all); raise them in Settings to simulate more"
            )

    # -- time ----------------------------------------------------------------------
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
            for inst in gpu.instances:
                if inst.phase in ("starting", "loading"):
                    cands.append(inst.phase_end)
            for inst, rate in gpu.speeds():
                cands.append(self.now + (inst.job.audio_s - inst.done_s) / rate)
        return max(self.now + 1e-6, min(cands))

    def _advance(self, to: float) -> None:
        dt = to - self.now
        for gpu in self.gpus:
            for inst, rate in gpu.speeds():
                inst.done_s = min(inst.job.audio_s, inst.done_s + dt * rate)
            gpu.mem_integral += dt * gpu.device.used_mb / gpu.device.total_mb
        self.now = to


__all__ = [
    "PROFILES",
    "Admission",
    "Policy",
    "SimGpu",
    "SimInstance",
    "SimResult",
    "Simulation",
    "lower_bound",
    "percentile",
]
