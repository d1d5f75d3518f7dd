"""Admission policies compared by the simulator, all seeing the same lagging readings.

``vramscribe`` is the real planner from :mod:`vramscribe.core`, behind the
same policy shell the runtime uses; the baselines (:mod:`vramscribe.sim.baselines`)
are what a user would otherwise reach for, and the original design taken
literally, so the benchmark shows what each rule of the planner buys.
"""

from __future__ import annotations

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.observe import MIB, DeviceInfo, PolicyShell, Tracked
from vramscribe.core.planner import plan
from vramscribe.core.settings import Settings
from vramscribe.core.wait import MemoryWaits
from vramscribe.sim.baselines import BatchedLoop, Seed, Sequential, StaticPool, WarmPool
from vramscribe.sim.model import Admission, Policy, SimInstance
from vramscribe.sim.scenarios import GpuSpec
from vramscribe.sim.simulator import Simulation


class Vramscribe:
    """The real planner behind the runtime's own policy shell, fed lagging readings.

    It keeps instances warm and picks batch sizes as the runtime does: the
    shell follows each simulated instance through the same states a worker
    reports (starting, loading, processing, idle, exited).
    """

    name = "vramscribe"
    reuse = True

    def __init__(self) -> None:
        self.book = FootprintBook()
        self.shell = PolicyShell()
        self.tracked: dict[int, Tracked] = {}
        self.waits: MemoryWaits | None = None

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        self._follow(sim)
        readings = {g.id: g.device.reading(now) for g in sim.gpus}
        devices = [device_info(g.id, g.spec, sim.settings) for g in sim.gpus]
        seen = self.shell.observe(now, readings, devices)
        for inst in seen.released:
            del self.tracked[inst.pid]
        decisions = plan(now, sim.queue, seen.snapshots, seen.views, sim.settings, self.book)
        for release in decisions.releases:
            self.shell.exited(self.tracked[int(release.instance_id)], now)
            sim.release(int(release.instance_id))
        for reject in decisions.rejects:
            sim.reject(reject.job_id, reject.reason)
        if self.waits is None:
            self.waits = MemoryWaits(sim.settings.max_wait_for_memory_s)
        for expired in self.waits.update(now, decisions, sim.queue):
            sim.give_up(expired.job_id, expired.reason)
        out = []
        for s in decisions.starts:
            pid = None if s.instance_id is None else int(s.instance_id)
            if pid is not None:
                job = sim.jobs[s.job_id]
                self.shell.assign(self.tracked[pid], job.id, s.reserved_mb, s.expected_end,
                                  job.priority, now, s.batch_size)  # fmt: skip
            out.append(Admission(s.job_id, s.device_id, s.reserved_mb, s.expected_end, pid,
                                 s.batch_size))  # fmt: skip
        return out

    def _follow(self, sim: Simulation) -> None:
        """Tell the shell what the simulated instances did, as workers would report it."""
        for gpu in sim.gpus:
            self.shell.cool(gpu.id, gpu.cooldown_until)
            for inst in gpu.instances:
                tracked = self.tracked.get(inst.pid)
                if tracked is None:
                    job = inst.job
                    tracked = Tracked(job.id, gpu.id, inst.pid, inst.reserved_mb,
                                      inst.expected_end, job.priority, job.reuse_key)  # fmt: skip
                    tracked.batch_size = inst.batch_size
                    self.tracked[inst.pid] = tracked
                    self.shell.start(tracked)
                if inst.phase != "starting" and tracked.starting:
                    self.shell.started(tracked)
                if inst.phase in ("processing", "idle") and tracked.loaded_at is None:
                    self.shell.loaded(tracked, inst.processing_since)

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        tracked = self.tracked.get(inst.pid)
        if tracked is None:
            return
        if not ok or not inst.is_idle:
            self.shell.exited(tracked, now)
            return
        self.shell.idle(tracked, now)
        key = inst.job.footprint_key("cuda", inst.batch_size)
        if tracked.peak_mb > 0:  # 0: no reading taken during this job showed it
            self.book.observe_peak(key, max(tracked.peak_mb, inst.loaded_mb), inst.job.audio_s)
        elapsed = now - inst.processing_since
        if elapsed > 0:
            self.book.observe_speed(key, inst.job.audio_s / elapsed, alone=not tracked.shared)


def make_policy(name: str) -> Policy:
    if name == "sequential":
        return Sequential()
    if name == "seed":
        return Seed()
    if name == "vramscribe":
        return Vramscribe()
    if name == "batched-1":
        return BatchedLoop()
    for prefix, pool in (("static-", StaticPool), ("warm-static-", WarmPool)):
        count = name.removeprefix(prefix)
        if name.startswith(prefix) and count.isdigit() and int(count) > 0:
            return pool(int(count))
    raise ValueError(
        f"unknown policy {name!r} "
        "(sequential, static-N, warm-static-N, batched-1, seed, vramscribe)"
    )


ALL_POLICIES = [
    "sequential",
    *(f"static-{n}" for n in range(1, 9)),
    *(f"warm-static-{n}" for n in (1, 2, 3, 4, 6, 8)),
    "batched-1",
    "seed",
    "vramscribe",
]

__all__ = [
    "ALL_POLICIES",
    "BatchedLoop",
    "Seed",
    "Sequential",
    "StaticPool",
    "Vramscribe",
    "WarmPool",
    "make_policy",
]


def device_info(dev_id: str, spec: GpuSpec, settings: Settings) -> DeviceInfo:
    """A simulated GPU as the shell sees it: the scenario's reserve and lag, and the
    limits the run was given (a reserve from both: the larger is left to others)."""
    limits = settings.limits.for_device(dev_id, spec.total_mb)
    return DeviceInfo(
        dev_id,
        "cuda",
        s_max=spec.s_max,
        reserve_bytes=max(limits.reserve_bytes, int(spec.reserve_mb * MIB)),
        memory_limit_bytes=limits.memory_limit_bytes,
        reading_lag_s=spec.lag_s,
    )
