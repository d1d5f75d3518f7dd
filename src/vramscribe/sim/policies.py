"""Admission policies compared by the simulator, all seeing the same lagging readings.

``vramscribe`` is the real planner from :mod:`vramscribe.core`, behind the
same policy shell the runtime uses; the baselines (:mod:`vramscribe.sim.baselines`)
are what a user would otherwise reach for, and the original design taken
literally, so the benchmark shows what each rule of the planner buys.
"""

from __future__ import annotations

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.observe import DeviceInfo, PolicyShell, Tracked
from vramscribe.core.planner import plan
from vramscribe.sim.baselines import BatchedLoop, Seed, Sequential, StaticPool, WarmPool
from vramscribe.sim.model import Admission, Policy, SimInstance
from vramscribe.sim.simulator import Simulation


class Vramscribe:
    """The real planner behind the runtime's own policy shell, fed lagging readings."""

    name = "vramscribe"
    reuse = False

    def __init__(self) -> None:
        self.book = FootprintBook()
        self.shell = PolicyShell()
        self.tracked: dict[int, Tracked] = {}

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        self._follow(now, sim)
        readings = {g.id: g.device.reading(now) for g in sim.gpus}
        devices = [DeviceInfo(g.id, "cuda") for g in sim.gpus]
        seen = self.shell.observe(now, readings, devices)
        for inst in seen.released:
            del self.tracked[inst.pid]
        decisions = plan(now, sim.queue, seen.snapshots, seen.views, sim.settings, self.book)
        for reject in decisions.rejects:
            sim.reject(reject.job_id, reject.reason)
        return [
            Admission(s.job_id, s.device_id, s.reserved_mb, s.expected_end)
            for s in decisions.starts
        ]

    def _follow(self, now: float, sim: Simulation) -> None:
        """Tell the shell about instances the simulator started, loaded or cooled down for."""
        for gpu in sim.gpus:
            self.shell.cool(gpu.id, gpu.cooldown_until)
            for inst in gpu.instances:
                tracked = self.tracked.get(inst.pid)
                if tracked is None:
                    tracked = Tracked(
                        inst.job.id, gpu.id, inst.pid, inst.reserved_mb, inst.expected_end
                    )
                    self.tracked[inst.pid] = tracked
                    self.shell.start(tracked)
                if inst.phase == "processing" and tracked.loaded_at is None:
                    self.shell.loaded(tracked, inst.processing_since)

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        tracked = self.tracked.get(inst.pid)
        if tracked is not None:
            self.shell.exited(tracked, now)
        if not ok:
            return
        key = inst.job.footprint_key("cuda")
        self.book.observe_peak(key, inst.allocated_mb, inst.job.audio_s)
        elapsed = now - inst.processing_since
        if elapsed > 0:
            self.book.observe_speed(key, inst.job.audio_s / elapsed)


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
