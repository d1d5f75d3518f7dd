"""Turn a loaded run into numbers and into findings a person can act on.

Everything here is a pure function of the :class:`~vramscribe.report.load.Run`,
so a report of a finished run always reads the same. Findings are emitted only
when the numbers cross a named threshold, so a clean run gets no advice.

Device time is split by what its instances were doing at each instant (from
the jobs' state changes, which are exact, rather than from the once-a-second
device readings): any instance transcribing -> transcribing; else any loading
-> loading; else jobs pending -> held back; else idle.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vramscribe.report.findings import RELOAD_WINDOW_S, with_findings
from vramscribe.report.load import Attempt, Job, Run
from vramscribe.report.reasons import (
    MEMORY_WAIT,
    UNPLANNED,
    is_warm,
    memory_wait_devices,
    normalise_reason,
    reason_segments,
)
from vramscribe.report.stats import (
    DeviceStats,
    ModelStats,
    ReasonStats,
    Report,
    TimeSplit,
    fmt_s,
    percentile,
)

__all__ = [
    "MEMORY_WAIT", "UNPLANNED", "DeviceStats", "ModelStats", "ReasonStats", "Report",
    "TimeSplit", "analyse", "fmt_s", "is_warm", "memory_wait_devices", "normalise_reason",
    "percentile", "reason_segments",
]  # fmt: skip


def _is_reload(a: Attempt, ends: Mapping[tuple[str, str], Sequence[float]]) -> bool:
    earlier = ends.get((a.device, a.model), ())
    k = bisect.bisect_right(earlier, a.start + 1e-9)
    return k > 0 and a.start - earlier[k - 1] < RELOAD_WINDOW_S


# -- device time ---------------------------------------------------------------------
@dataclass(slots=True)
class _Sweep:
    split: TimeSplit
    mean_instances: float
    max_instances: int
    idle_while_waiting_s: float
    waited_on: tuple[str, ...]


def _sweep(
    run: Run,
    device: str,
    attempts: Sequence[Attempt],
    pending: Sequence[tuple[float, float]],
    memory_waits: Sequence[tuple[float, float, str]],
) -> _Sweep:
    """Integrate the device's state over the run, changing only where an event happens."""
    deltas: list[tuple[float, str, int]] = []
    for a in attempts:
        ready = a.ready if a.ready is not None else a.end
        deltas += [(a.start, "loading", 1), (ready, "loading", -1)]
        if a.ready is not None:
            deltas += [(a.ready, "processing", 1), (a.end, "processing", -1)]
    for start, end in pending:
        deltas += [(start, "pending", 1), (end, "pending", -1)]
    elsewhere = sorted({d for _, _, d in memory_waits if d != device})
    for start, end, dev in memory_waits:
        if dev != device:
            deltas += [(start, "elsewhere", 1), (end, "elsewhere", -1)]
    deltas.sort(key=lambda d: d[0])
    count: Counter[str] = Counter()
    parts = {"loading": 0.0, "transcribing": 0.0, "held_back": 0.0, "idle": 0.0}
    busy = idle_waiting = 0.0
    peak = 0
    t = run.t0
    k = 0
    while True:
        nxt = deltas[k][0] if k < len(deltas) else run.t_end
        nxt = min(max(nxt, run.t0), run.t_end)
        span = nxt - t
        if span > 0:
            instances = count["loading"] + count["processing"]
            busy += instances * span
            if count["processing"] > 0:
                parts["transcribing"] += span
            elif count["loading"] > 0:
                parts["loading"] += span
            elif count["pending"] > 0:
                parts["held_back"] += span
            else:
                parts["idle"] += span
            if instances == 0 and count["elsewhere"] > 0:
                idle_waiting += span
            t = nxt
        if k >= len(deltas):
            break
        at = deltas[k][0]
        while k < len(deltas) and deltas[k][0] == at:
            count[deltas[k][1]] += deltas[k][2]
            k += 1
        peak = max(peak, count["loading"] + count["processing"])
    wall = run.wall_s
    return _Sweep(
        TimeSplit(**parts),
        busy / wall if wall > 0 else 0.0,
        peak,
        idle_waiting,
        tuple(elsewhere),
    )


# -- the report ----------------------------------------------------------------------
def analyse(run: Run) -> Report:
    """Every number in the report, and the findings they support."""
    jobs = list(run.jobs.values())
    attempts = run.attempts
    completed = [j for j in jobs if j.state == "completed"]
    audio = sum(j.audio_s for j in completed)
    wall = run.wall_s
    cold = [a for a in attempts if not is_warm(a)]
    reloaded = _reloads(attempts, cold)
    segments = {j.id: reason_segments(j) for j in jobs}
    failures = Counter(f.kind for j in jobs for f in j.failures)
    releases = [r.release_s for j in jobs for r in j.releases]
    report = Report(
        name=run.name,
        path=run.path,
        ended=run.ended,
        wall_s=wall,
        jobs=len(jobs),
        completed=len(completed),
        failed=sum(1 for j in jobs if j.state == "failed"),
        cancelled=sum(1 for j in jobs if j.state == "cancelled"),
        unfinished=sum(1 for j in jobs if j.state not in ("completed", "failed", "cancelled")),
        audio_s=audio,
        speed_x=audio / wall if wall > 0 and completed else None,
        models=tuple(_model_stats(jobs)),
        devices=tuple(_device_stats(run, jobs, segments, reloaded)),
        reasons=tuple(_reason_stats(jobs, segments)),
        failures=dict(sorted(failures.items())),
        ooms=failures.get("oom", 0),
        retries=sum(
            1
            for j in jobs
            for c in j.states
            if c.to_state == "pending" and c.from_state != "pending"
        ),
        loads=len(cold),
        reloads=len(reloaded),
        warm_starts=len(attempts) - len(cold),
        release_p50=percentile(releases, 50),
        release_max=max(releases) if releases else None,
        memory_wait_p50=percentile(_memory_waits_per_job(segments), 50),
        waits=tuple(w for j in jobs if (w := j.wait_s) is not None),
        load_times=tuple(ld.load_s for j in jobs for ld in j.loads),
        settings=dict(run.settings),
    )
    return with_findings(report, run)


Segments = Mapping[str, Sequence[tuple[float, float, str]]]
"""Each job's pending stretches with their normalised reasons, by job id."""


def _reloads(attempts: Sequence[Attempt], cold: Sequence[Attempt]) -> set[int]:
    """The cold starts (by ``id``) of a model that had just left the same device."""
    ends: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in attempts:
        if a.outcome != "running":
            ends[(a.device, a.model)].append(a.end)
    for v in ends.values():
        v.sort()
    return {id(a) for a in cold if _is_reload(a, ends)}


def _device_stats(
    run: Run, jobs: Sequence[Job], segments: Segments, reloaded: set[int]
) -> list[DeviceStats]:
    pending = [(iv.start, iv.end) for j in jobs for iv in j.intervals if iv.state == "pending"]
    memory_waits = [
        (s, e, dev)
        for segs in segments.values()
        for s, e, label in segs
        for dev in memory_wait_devices(label)
    ]
    oom_by_device = Counter(f.device for j in jobs for f in j.failures if f.kind == "oom")
    kinds = {d.id: d.kind for d in run.devices}
    devices = []
    for dev in run.device_ids():
        mine = [a for a in run.attempts if a.device == dev]
        sweep = _sweep(run, dev, mine, pending, memory_waits)
        samples = [s for s in run.samples.get(dev, []) if s.total_mb > 0]
        used = [min(1.0, (s.ours_mb + s.reserved_mb + s.others_mb) / s.total_mb) for s in samples]
        ours = [min(1.0, s.ours_mb / s.total_mb) for s in samples]
        others = [min(1.0, s.others_mb / s.total_mb) for s in samples]
        devices.append(
            DeviceStats(
                dev,
                kinds.get(dev, ""),
                len(samples),
                statistics.fmean(used) if used else None,
                statistics.fmean(ours) if ours else None,
                statistics.fmean(others) if others else None,
                sweep.mean_instances,
                sweep.max_instances,
                sweep.split,
                sum(1 for a in mine if not is_warm(a)),
                sum(1 for a in mine if id(a) in reloaded),
                oom_by_device.get(dev, 0),
                sweep.idle_while_waiting_s,
                sweep.waited_on,
            )
        )
    return devices


def _model_stats(jobs: Sequence[Job]) -> list[ModelStats]:
    models = []
    for model in sorted({j.model for j in jobs}):
        mj = [j for j in jobs if j.model == model]
        waits = [w for j in mj if (w := j.wait_s) is not None]
        loads = [ld.load_s for j in mj for ld in j.loads]
        ready = [a.loading_s for j in mj for a in j.attempts if a.ready is not None]
        done = [(j.audio_s, j.attempts[-1]) for j in mj if j.state == "completed" and j.attempts]
        busy = sum(a.processing_s for _, a in done)
        peak = [ld.memory_mb for j in mj for ld in j.loads]
        models.append(
            ModelStats(
                model,
                len(mj),
                len(done),
                sum(j.audio_s for j in mj if j.state == "completed"),
                percentile(waits, 50),
                percentile(waits, 95),
                percentile(loads, 50),
                percentile(loads, 95),
                percentile(ready, 50),
                sum(s for s, _ in done) / busy if busy > 0 else None,
                max(peak) if peak else None,
            )
        )
    return models


def _reason_stats(jobs: Sequence[Job], segments: Segments) -> list[ReasonStats]:
    reason_jobs: dict[str, set[str]] = defaultdict(set)
    reason_secs: dict[str, float] = defaultdict(float)
    reason_events: Counter[str] = Counter()
    for j in jobs:
        for r in j.reasons:
            reason_events[normalise_reason(r.reason)] += 1
        for s, e, label in segments[j.id]:
            if label == UNPLANNED:
                continue
            reason_jobs[label].add(j.id)
            reason_secs[label] += e - s
    return sorted(
        (
            ReasonStats(label, len(reason_jobs[label]), reason_events[label], reason_secs[label])
            for label in {*reason_jobs, *reason_events}
        ),
        key=lambda r: (-r.seconds, -r.events, r.reason),
    )


def _memory_waits_per_job(segments: Segments) -> list[float]:
    """Seconds each job that waited for memory spent waiting for it."""
    return [
        w
        for segs in segments.values()
        if (w := sum(e - s for s, e, label in segs if memory_wait_devices(label))) > 0
    ]
