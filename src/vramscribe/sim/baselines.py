"""The baselines: what a GPU owner would run instead of vramscribe.

None of them reads an estimate beyond what its real counterpart would: the
plain loops and pools check no memory at all, the seed design checks one
lagging snapshot, and the batched loop sizes its batch from the free memory it
sees once per file, as a script calling ``nvidia-smi`` would.
"""

from __future__ import annotations

from vramscribe.core.footprints import builtin_estimate
from vramscribe.core.jobs import Job
from vramscribe.core.profiles import BATCH_CANDIDATES, max_batch
from vramscribe.sim.model import Admission, SimGpu, SimInstance
from vramscribe.sim.simulator import Simulation


class _NoFeedback:
    reuse = False

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        return None


class Sequential(_NoFeedback):
    """One job at a time, in arrival order: a plain loop over files, a new process each."""

    name = "sequential"

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        if sim.instances():
            return []
        for job in sim.pending_fifo():
            if job.not_before <= now:
                return [Admission(job.id, sim.gpus[0].id, 0.0)]
        return []


class StaticPool(_NoFeedback):
    """N workers per GPU, always busy, no memory check, a new process per file."""

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


def _same_engine(inst: SimInstance, job: Job) -> bool:
    return (inst.model, inst.compute_type) == (job.model, job.compute_type)


class BatchedLoop(_NoFeedback):
    """faster-whisper's README way: one instance per GPU, files one after another.

    Files are taken grouped by model (the model of the oldest waiting file,
    then every file of that model); the instance stays loaded within a group
    and is replaced (released, then a new one started and loaded) between
    groups. Each file runs at batch 16, or the largest batch that fits the
    GPU's memory beside the neighbour's current use (as the last reading shows
    it) and that the file has 30 s windows for.
    """

    name = "batched-1"
    reuse = True
    preferred_batch = 16

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        ready = [j for j in sim.pending_fifo() if j.not_before <= now]
        out: list[Admission] = []
        for gpu in sim.gpus:
            if not ready:
                break
            if any(not i.is_idle for i in gpu.instances):
                continue
            warm = next(iter(gpu.idle()), None)
            job = next((j for j in ready if warm and _same_engine(warm, j)), None)
            if job is None:
                job = ready[0]
                if warm is not None:
                    sim.release(warm.pid)
                    warm = None
            ready.remove(job)
            batch = self._batch(gpu, job, now)
            pid = warm.pid if warm is not None else None
            out.append(Admission(job.id, gpu.id, 0.0, instance_pid=pid, batch_size=batch))
        return out

    def _batch(self, gpu: SimGpu, job: Job, now: float) -> int:
        reading = gpu.device.reading(now)
        neighbour = max(0.0, reading.used_mb - sum(reading.processes.values()))
        room = gpu.spec.total_mb - neighbour
        cap = min(self.preferred_batch, max_batch(job.audio_s))
        for b in sorted(BATCH_CANDIDATES, reverse=True):
            if b <= cap and builtin_estimate((job.model, job.compute_type, b, "cuda")) <= room:
                return b
        return 1


class WarmPool(_NoFeedback):
    """N persistent workers per GPU, no memory check (GNU parallel or Celery, a model each).

    Files go in arrival order to a free worker: one that has the file's model
    loaded if there is one, else an empty slot, else a worker that reloads
    (its instance is released and a new one started for the new model).
    """

    reuse = True

    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"warm-static-{n}"

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        idle = [i for g in sim.gpus for i in g.idle()]
        slots = {g.id: self.n - len(g.instances) for g in sim.gpus}
        busy = {g.id: sum(1 for i in g.instances if not i.is_idle) for g in sim.gpus}
        out: list[Admission] = []
        for job in sim.pending_fifo():
            if not idle and not any(slots.values()):
                break
            if job.not_before > now:
                continue
            warm = next((i for i in idle if _same_engine(i, job)), None)
            if warm is not None:
                idle.remove(warm)
                out.append(Admission(job.id, warm.gpu.id, 0.0, instance_pid=warm.pid))
                continue
            open_gpus = [g for g, n in slots.items() if n > 0]
            if open_gpus:
                gpu_id = min(open_gpus, key=lambda g: (busy[g], g))
                slots[gpu_id] -= 1
            else:
                reload = idle.pop(0)
                sim.release(reload.pid)
                gpu_id = reload.gpu.id
            busy[gpu_id] += 1
            out.append(Admission(job.id, gpu_id, 0.0))
        return out
