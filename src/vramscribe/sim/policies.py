"""Admission policies compared by the simulator, all seeing the same lagging readings.

``vramscribe`` is the real planner from :mod:`vramscribe.core`; the others are
the baselines a user would otherwise reach for, and the original design taken
literally, so the benchmark shows what each rule of the planner buys.
"""

from __future__ import annotations

from vramscribe.core.footprints import FootprintBook, builtin_estimate
from vramscribe.core.observe import DeviceInfo, PolicyShell, Tracked
from vramscribe.core.planner import plan
from vramscribe.sim.simulator import Admission, Policy, SimInstance, Simulation


class _NoFeedback:
    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        return None


class Sequential(_NoFeedback):
    """One job at a time, in arrival order: a plain loop over files."""

    name = "sequential"

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        if sim.instances():
            return []
        for job in sim.pending_fifo():
            if job.not_before <= now:
                return [Admission(job.id, sim.gpus[0].id, 0.0)]
        return []


class StaticPool(_NoFeedback):
    """N workers per GPU, always busy, no memory check: a fixed-size worker pool."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"static-{n}"

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        load = {g.id: len(g.instances) for g in sim.gpus}
        out: list[Admission] = []
        for job in sim.pending_fifo():
            if job.not_before > now:
                continue
            gpu_id = min(load, key=lambda g: (load[g], g))
            if load[gpu_id] >= self.n:
                break
            load[gpu_id] += 1
            out.append(Admission(job.id, gpu_id, 0.0))
        return out


class Seed(_NoFeedback):
    """The original design taken literally.

    One snapshot per pass with no subtraction between admissions, priorities
    sorted as strings, nothing new while any model is loading, at most five
    concurrent models, 10% margin on free memory.
    """

    name = "seed"
    max_concurrent_models = 5
    safety_margin = 0.1

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        running = sim.instances()
        if any(i.phase != "processing" for i in running):
            return []
        free = {g.id: g.device.reading(now).free_mb for g in sim.gpus}
        tasks = sorted(
            (j for j in sim.pending_fifo() if j.not_before <= now),
            key=lambda j: "high" if j.priority > 50 else ("normal" if j.priority == 50 else "low"),
        )
        out: list[Admission] = []
        active = len(running)
        for task in tasks:
            if active >= self.max_concurrent_models:
                break
            need = builtin_estimate((task.model, task.compute_type, 1, "cuda"))
            for gpu in sim.gpus:
                if free[gpu.id] * (1 - self.safety_margin) >= need:
                    out.append(Admission(task.id, gpu.id, 0.0))
                    active += 1
                    break
        return out


class Vramscribe:
    """The real planner behind the runtime's own policy shell, fed lagging readings."""

    name = "vramscribe"

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
    if name.startswith("static-"):
        return StaticPool(int(name.split("-", 1)[1]))
    raise ValueError(f"unknown policy {name!r} (sequential, static-N, seed, vramscribe)")


ALL_POLICIES = ["sequential", *(f"static-{n}" for n in range(1, 9)), "seed", "vramscribe"]
