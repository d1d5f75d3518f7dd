"""The fallback ladder in the runtime: applying a rung to a task, and the CPU rung's device.

The decision is :func:`vramscribe.core.retry.decide_retry`'s; this module does
what the runtime must for it. A rung that changes the compute type gives the
task an engine of that type (and so another warm-instance key). The CPU rung
(``--fallback cpu``) needs a CPU device in a GPU run: it is added to the run,
but only jobs the ladder sent there may use it, so the run's own jobs never
spill onto the CPU. The planner is pure and knows nothing of this: each
runner step plans the run's own devices for its own jobs and, when any job
has fallen back, the CPU for those jobs, in two calls whose plans are merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job
from vramscribe.core.observe import Observation
from vramscribe.core.planner import Plan, plan
from vramscribe.core.queue import PendingQueue
from vramscribe.core.retry import Fallback
from vramscribe.core.settings import Settings
from vramscribe.devices.base import Device
from vramscribe.engines.base import engine_key
from vramscribe.runtime.task import Task


def with_fallback_device(
    devices: Sequence[Device], settings: Settings, cpu_threads: int
) -> list[Device]:
    """``devices``, plus the CPU when the ladder may send jobs there and the run has none."""
    out = list(devices)
    if "cpu" in settings.fallback and not any(d.kind == "cpu" for d in out):
        from vramscribe.devices.cpu import CpuDevice

        out.append(CpuDevice(threads_per_instance=cpu_threads))
    return out


def fallback_only(devices: Iterable[Device]) -> set[str]:
    """The CPU devices of a run that also has others: only fallen-back jobs may use them."""
    devices = list(devices)
    if all(d.kind == "cpu" for d in devices):
        return set()
    return {d.id for d in devices if d.kind == "cpu"}


def apply_rung(task: Task, rung: Fallback) -> None:
    """Give ``task`` the engine the rung asks for (the job's fields are already set)."""
    if rung.compute_type is not None and rung.compute_type != task.engine.compute_type:
        task.engine = dataclasses.replace(task.engine, compute_type=rung.compute_type)
        task.job.engine_key = engine_key(task.engine)


def plan_split(
    now: float,
    queue: PendingQueue,
    seen: Observation,
    spare: set[str],
    settings: Settings,
    book: FootprintBook,
) -> Plan:
    """Plan the run's own devices for its own jobs, and ``spare`` (the CPU rung's devices)
    for the jobs the ladder sent there."""
    if not spare:
        return plan(now, queue, seen.snapshots, seen.views, settings, book)
    own_snaps = [s for s in seen.snapshots if s.id not in spare]
    own_views = [v for v in seen.views if v.device_id not in spare]
    pinned = [j for j in queue if j.device_kind is not None]
    own: Iterable[Job] = queue if not pinned else [j for j in queue if j.device_kind is None]
    result = plan(now, own, own_snaps, own_views, settings, book)
    spare_snaps = [s for s in seen.snapshots if s.id in spare]
    spare_views = [v for v in seen.views if v.device_id in spare]
    extra = plan(now, pinned, spare_snaps, spare_views, settings, book)
    result.starts.extend(extra.starts)
    result.rejects.extend(extra.rejects)
    result.releases.extend(extra.releases)
    for job in pinned:
        result.reasons[job.id] = extra.reason_for(job.id)
    return result
