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
import dataclasses
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.report.load import Attempt, Job, Run

# Thresholds for findings: below these, the report says nothing.
LOADING_SHARE_FINDING = 0.15
"""Share of device time spent only loading models that is worth pointing out."""
RELOAD_WINDOW_S = 10.0
"""A load counts as a reload if the same model left the same device this recently."""
LOAD_VS_WORK_FINDING = 0.5
"""Median start-to-ready time, as a fraction of median transcribing time, worth pointing out."""
MEMORY_WAIT_FINDING_S = 5.0
"""Median time a job waited for memory that is worth pointing out."""
IDLE_WHILE_WAITING_FINDING = 0.10
"""Share of the run a device sat idle while jobs waited for memory elsewhere."""
HELD_BACK_FINDING = 0.10
"""Share of the run a device ran nothing while jobs were pending."""
SLOW_RELEASE_S = 1.0
"""Time for memory to come back after a worker exited that is worth pointing out."""
NEIGHBOUR_SHARE_FINDING = 0.20
"""Mean share of a device's memory held by other processes that is worth pointing out."""
CAP_WAIT_FINDING_S = 30.0
"""Job-seconds spent waiting on the instance cap that are worth pointing out."""

MEMORY_WAIT = "waiting for memory on"
UNPLANNED = "not yet planned"
"""A job's first moments in the queue, before the planner gave it a reason (not a reason)."""


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Per model; waits and loads in seconds, speed in x real time, memory in MB."""

    model: str
    jobs: int
    completed: int
    audio_s: float
    wait_p50: float | None
    wait_p95: float | None
    load_p50: float | None
    load_p95: float | None
    ready_p50: float | None
    speed_x: float | None
    peak_mb: float | None


@dataclass(frozen=True, slots=True)
class TimeSplit:
    loading: float = 0.0
    transcribing: float = 0.0
    held_back: float = 0.0
    idle: float = 0.0

    @property
    def total(self) -> float:
        return self.loading + self.transcribing + self.held_back + self.idle

    def share(self, part: str) -> float:
        total = self.total
        return float(getattr(self, part)) / total if total > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """``memory_used`` counts ours, reserved and other processes; shares are of total memory."""

    id: str
    kind: str
    samples: int
    memory_used: float | None
    memory_ours: float | None
    others_share: float | None
    mean_instances: float
    max_instances: int
    time: TimeSplit
    loads: int
    reloads: int
    ooms: int
    idle_while_waiting_s: float
    waited_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReasonStats:
    """A normalised pending reason: distinct jobs, reason changes, and job-seconds under it."""

    reason: str
    jobs: int
    events: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    path: Path
    ended: bool
    wall_s: float
    jobs: int
    completed: int
    failed: int
    cancelled: int
    unfinished: int
    audio_s: float
    speed_x: float | None
    models: tuple[ModelStats, ...]
    devices: tuple[DeviceStats, ...]
    reasons: tuple[ReasonStats, ...]
    failures: Mapping[str, int]
    ooms: int
    retries: int
    loads: int
    reloads: int
    release_p50: float | None
    release_max: float | None
    memory_wait_p50: float | None
    waits: tuple[float, ...]
    load_times: tuple[float, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[str, ...] = ()
    warm_starts: int = 0
    """Attempts that ran on an already loaded instance: loads avoided."""

    @property
    def time(self) -> TimeSplit:
        """Device time of all devices together."""
        return TimeSplit(
            sum(d.time.loading for d in self.devices),
            sum(d.time.transcribing for d in self.devices),
            sum(d.time.held_back for d in self.devices),
            sum(d.time.idle for d in self.devices),
        )


# -- helpers -------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


_REASON_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^waiting for memory on (\S+?)(?: \(.*\))?$"), r"waiting for memory on \1"),
    (re.compile(r"^(\S+) has [\d.]+ GiB free after reservations$"), r"waiting for memory on \1"),
    (
        re.compile(r"^held back for job \S+ \(higher priority\) on (\S+)$"),
        r"held back for a higher-priority job on \1",
    ),
    (re.compile(r"^retrying in .*$"), "retrying"),
    (re.compile(r"^instance cap reached \(\d+/\d+\)$"), "instance cap reached"),
    (re.compile(r"^instance cap reached on (\S+) \(\d+/\d+\)$"), r"instance cap reached on \1"),
    (re.compile(r"^queued behind job \S+ and \d+ others$"), "queued behind other jobs"),
    (
        re.compile(r"^waiting behind job \S+ \(strict order\)$"),
        "waiting behind another job (strict order)",
    ),
]
_NUMBERS_IN_PARENS = re.compile(r"\s*\([^)]*\d[^)]*\)")
_BARE_NUMBER = re.compile(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])")


def normalise_reason(reason: str) -> str:
    """One label per kind of wait: numbers and job ids out, device ids kept.

    A summary of several closed devices (``waiting: a; b``) keeps one label per
    device, in order.
    """
    text = reason.strip()
    if not text:
        return UNPLANNED
    text = text.removeprefix("waiting: ")
    parts: list[str] = []
    for raw in text.split("; "):
        part = raw.strip()
        for pattern, label in _REASON_RULES:
            if pattern.match(part):
                part = pattern.sub(label, part)
                break
        else:
            part = _BARE_NUMBER.sub("N", _NUMBERS_IN_PARENS.sub("", part))
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def memory_wait_devices(label: str) -> list[str]:
    return re.findall(MEMORY_WAIT + r" (\S+?)(?:;|$)", label)


def reason_segments(job: Job) -> list[tuple[float, float, str]]:
    """(start, end, normalised reason) for every stretch the job was pending.

    The runner only records a reason when it changes, so a stretch begins with
    the latest reason recorded before it (even from an earlier stretch).
    """
    out: list[tuple[float, float, str]] = []
    times = [r.t for r in job.reasons]
    for iv in job.intervals:
        if iv.state != "pending" or iv.end <= iv.start:
            continue
        k = bisect.bisect_right(times, iv.start)
        label = normalise_reason(job.reasons[k - 1].reason) if k else UNPLANNED
        t = iv.start
        while k < len(times) and times[k] < iv.end:
            out.append((t, times[k], label))
            t, label = times[k], normalise_reason(job.reasons[k].reason)
            k += 1
        out.append((t, iv.end, label))
    return out


def is_warm(a: Attempt) -> bool:
    """The attempt ran on an instance that was already loaded (no start, no load)."""
    return a.reason.startswith("on warm instance")


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

    ends: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in attempts:
        if a.outcome != "running":
            ends[(a.device, a.model)].append(a.end)
    for v in ends.values():
        v.sort()
    cold = [a for a in attempts if not is_warm(a)]
    reloaded = {id(a) for a in cold if _is_reload(a, ends)}

    segments = {j.id: reason_segments(j) for j in jobs}
    pending = [(iv.start, iv.end) for j in jobs for iv in j.intervals if iv.state == "pending"]
    memory_waits = [
        (s, e, dev)
        for segs in segments.values()
        for s, e, label in segs
        for dev in memory_wait_devices(label)
    ]
    failures = Counter(f.kind for j in jobs for f in j.failures)
    oom_by_device = Counter(f.device for j in jobs for f in j.failures if f.kind == "oom")
    devices = []
    kinds = {d.id: d.kind for d in run.devices}
    for dev in run.device_ids():
        mine = [a for a in attempts if a.device == dev]
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
    reasons = sorted(
        (
            ReasonStats(label, len(reason_jobs[label]), reason_events[label], reason_secs[label])
            for label in {*reason_jobs, *reason_events}
        ),
        key=lambda r: (-r.seconds, -r.events, r.reason),
    )
    per_job_memory_wait = [
        w
        for segs in segments.values()
        if (w := sum(e - s for s, e, label in segs if memory_wait_devices(label))) > 0
    ]
    releases = [r.release_s for j in jobs for r in j.releases]
    retries = sum(
        1 for j in jobs for c in j.states if c.to_state == "pending" and c.from_state != "pending"
    )
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
        models=tuple(models),
        devices=tuple(devices),
        reasons=tuple(reasons),
        failures=dict(sorted(failures.items())),
        ooms=failures.get("oom", 0),
        retries=retries,
        loads=len(cold),
        reloads=len(reloaded),
        warm_starts=len(attempts) - len(cold),
        release_p50=percentile(releases, 50),
        release_max=max(releases) if releases else None,
        memory_wait_p50=percentile(per_job_memory_wait, 50),
        waits=tuple(w for j in jobs if (w := j.wait_s) is not None),
        load_times=tuple(ld.load_s for j in jobs for ld in j.loads),
        settings=dict(run.settings),
    )
    return _with_findings(report, run)


# -- findings ------------------------------------------------------------------------
def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _with_findings(report: Report, run: Run) -> Report:
    out: list[str] = []
    margin = report.settings.get("safety_margin")
    out += _failure_findings(report, run, margin)
    out += _loading_findings(report, run)
    out += _waiting_findings(report, run, margin)
    if report.release_max is not None and report.release_max >= SLOW_RELEASE_S:
        assert report.release_p50 is not None
        out.append(
            f"memory took up to {fmt_s(report.release_max)} to come back after a worker exited "
            f"(median {fmt_s(report.release_p50)}); nothing new can use it until then"
        )
    for d in report.devices:
        if d.others_share is not None and d.others_share >= NEIGHBOUR_SHARE_FINDING:
            out.append(
                f"other processes held {d.others_share:.0%} of {d.id}'s memory on average; "
                "vramscribe can only use the rest"
            )
    return dataclasses.replace(report, findings=tuple(out))


def _failure_findings(report: Report, run: Run, margin: Any) -> list[str]:
    out = []
    for d in report.devices:
        if d.ooms:
            text = f"{_plural(d.ooms, 'out-of-memory failure')} on {d.id}"
            if isinstance(margin, int | float):
                text += (
                    f"; a higher --safety-margin (now {margin:.2f}) leaves more room for "
                    "neighbours and for memory that grows during transcription"
                )
            out.append(text)
    if report.retries:
        retried = {j.id for j in run.jobs.values() if len(j.attempts) > 1}
        recovered = sum(1 for j in retried if run.jobs[j].state == "completed")
        kinds = ", ".join(f"{k}: {n}" for k, n in report.failures.items())
        out.append(
            f"{_plural(report.retries, 'failed attempt')} ({kinds}) "
            f"{'was' if report.retries == 1 else 'were'} retried; "
            f"{recovered} of {len(retried)} retried jobs then completed"
        )
    if report.failed:
        out.append(
            f"{_plural(report.failed, 'job')} failed for good; "
            "the worker-*.log files in the run folder hold each attempt's errors"
        )
    return out


def _loading_findings(report: Report, run: Run) -> list[str]:
    out = []
    split = report.time
    share = split.share("loading")
    if share >= LOADING_SHARE_FINDING:
        text = f"{share:.0%} of device time was spent loading models with nothing transcribing"
        if report.reloads:
            text += (
                f"; {report.reloads} of {report.loads} loads were of a model that had just "
                f"been unloaded on the same device (within {RELOAD_WINDOW_S:.0f} s)"
            )
        out.append(text)
    done = [
        a
        for a in run.attempts
        if a.outcome == "completed" and a.ready is not None and not is_warm(a)
    ]
    if report.warm_starts:
        return out
    ready = percentile((a.loading_s for a in done), 50)
    work = percentile((a.processing_s for a in done), 50)
    audio = percentile((run.jobs[a.job].audio_s for a in done), 50)
    if ready is not None and work and audio is not None and ready >= LOAD_VS_WORK_FINDING * work:
        out.append(
            f"a typical job spent {fmt_s(ready)} starting its worker and loading the model "
            f"for {fmt_s(work)} of transcribing ({fmt_s(audio)} of audio); every job loads "
            "the model afresh in its own worker, so short files pay that cost each time"
        )
    return out


def _waiting_findings(report: Report, run: Run, margin: Any) -> list[str]:
    out = []
    wait = report.memory_wait_p50
    if wait is not None and wait >= MEMORY_WAIT_FINDING_S:
        text = f"jobs waited a median of {fmt_s(wait)} for memory"
        if isinstance(margin, int | float) and margin > 0 and not report.ooms:
            text += (
                f"; no job ran out of memory, so a lower --safety-margin (now {margin:.2f}) "
                "would admit them sooner"
            )
        else:
            text += (
                "; the devices were full: a smaller model or a lighter --compute-type "
                "fits more instances at once"
            )
        out.append(text)
    wall = run.wall_s
    named = set()
    for d in report.devices:
        if wall > 0 and d.idle_while_waiting_s / wall >= IDLE_WHILE_WAITING_FINDING:
            named.add(d.id)
            where = " and ".join(d.waited_on)
            out.append(
                f"{d.id} was idle {d.idle_while_waiting_s / wall:.0%} of the time while jobs "
                f"waited for memory on {where}; those jobs did not fit in {d.id}'s free memory"
            )
    for d in report.devices:
        share = d.time.share("held_back")
        if d.id not in named and share >= HELD_BACK_FINDING:
            top = next((r.reason for r in report.reasons), "unknown")
            out.append(
                f"{d.id} ran nothing for {share:.0%} of the run while jobs were pending "
                f"(the most common reason: {top})"
            )
    cap = sum(r.seconds for r in report.reasons if r.reason.startswith("instance cap reached"))
    if cap >= CAP_WAIT_FINDING_S:
        out.append(
            f"jobs spent {fmt_s(cap)} in total waiting on the instance cap; "
            "--max-instances raises it if the devices have memory to spare"
        )
    return out
