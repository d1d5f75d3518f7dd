"""A run in the Chrome trace event format, for Perfetto and chrome://tracing.

Each device is a process and each instance lane a thread, so a viewer shows
the same picture as ``timeline.png`` but zoomable, with every phase's job,
model and reasons a click away. Jobs' waits in the queue form one more
process. Times are whole microseconds since the run started: start and end
are rounded, not durations, so back-to-back phases on a lane never overlap
(viewers reject slices on one thread that overlap without nesting).
"""

from __future__ import annotations

from typing import Any

from vramscribe.report.analysis import UNPLANNED, reason_segments
from vramscribe.report.load import Attempt, Run

QUEUE_NAME = "queue (waiting jobs)"


class _Trace:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.events: list[dict[str, Any]] = []

    def us(self, t: float) -> int:
        return round((t - self.t0) * 1e6)

    def meta(self, name: str, pid: int, tid: int, args: dict[str, Any]) -> None:
        self.events.append({"ph": "M", "name": name, "pid": pid, "tid": tid, "args": args})

    def span(
        self,
        name: str,
        cat: str,
        pid: int,
        tid: int,
        start: float,
        end: float,
        args: dict[str, Any],
    ) -> None:
        args = {k: v for k, v in args.items() if v is not None}
        ts = self.us(start)
        dur = max(0, self.us(end) - ts)
        self.events.append(
            {"ph": "X", "name": name, "cat": cat, "pid": pid, "tid": tid, "ts": ts, "dur": dur,
             "args": args}
        )  # fmt: skip

    def counter(self, name: str, pid: int, t: float, args: dict[str, float]) -> None:
        self.events.append({"ph": "C", "name": name, "pid": pid, "tid": 0, "ts": self.us(t),
                            "args": args})  # fmt: skip


def chrome_trace(run: Run) -> dict[str, Any]:
    """The trace as a JSON-ready object (``{"traceEvents": [...]}``)."""
    tr = _Trace(run.t0)
    devices = run.device_ids()
    pids = {dev: n + 1 for n, dev in enumerate(devices)}
    queue_pid = len(devices) + 1
    for name, pid in [*pids.items(), (QUEUE_NAME, queue_pid)]:
        tr.meta("process_name", pid, 0, {"name": name})
        tr.meta("process_sort_index", pid, 0, {"sort_index": pid})
    _instances(run, tr, pids)
    _queue(run, tr, queue_pid)
    for dev, samples in run.samples.items():
        pid = pids[dev]
        for s in samples:
            tr.counter("memory MB", pid, s.t, {"others": s.others_mb, "ours": s.ours_mb,
                       "reserved": s.reserved_mb, "free": s.free_shown_mb})  # fmt: skip
            tr.counter("instances", pid, s.t, {"loading": s.loading,
                       "running": s.instances - s.loading, "pending jobs": s.pending})  # fmt: skip
    return {
        "traceEvents": tr.events,
        "displayTimeUnit": "ms",
        "otherData": {"run": run.name, "settings": run.settings},
    }


def _waited_for(run: Run, a: Attempt) -> list[str]:
    """Why the job was pending in the stretch that ended with this attempt's start."""
    job = run.jobs[a.job]
    stretch = next(
        (iv for iv in job.intervals if iv.state == "pending" and iv.end == a.start), None
    )
    if stretch is None:
        return []
    labels = {lb for s, _, lb in reason_segments(job) if stretch.start <= s < stretch.end}
    return sorted(labels - {UNPLANNED})


def _instances(run: Run, tr: _Trace, pids: dict[str, int]) -> None:
    attempts = run.attempts
    lanes: set[tuple[int, int]] = set()
    for a in attempts:
        pid, tid = pids[a.device], a.lane + 1
        lanes.add((pid, tid))
        base: dict[str, Any] = {"job": a.job, "model": a.model, "attempt": a.number}
        failure = f"{a.failure.kind}: {a.failure.message}" if a.failure is not None else None
        ready = a.ready if a.ready is not None else a.end
        load_args = {**base, "reason": a.reason, "waited for": _waited_for(run, a)}
        if a.load is not None:
            load_args |= {"load_s": a.load.load_s, "memory_mb": a.load.memory_mb}
        if a.ready is None:
            load_args |= {"outcome": a.outcome, "failure": failure}
        tr.span(a.input, "loading", pid, tid, a.start, ready, load_args)
        if a.ready is not None:
            audio = run.jobs[a.job].audio_s
            proc_args = {**base, "audio_s": audio, "outcome": a.outcome, "failure": failure}
            tr.span(a.input, "processing", pid, tid, a.ready, a.end, proc_args)
        if a.release is not None and a.release_until is not None and a.release_until > a.end:
            args = {**base, "release_s": a.release.release_s}
            tr.span(a.input, "releasing", pid, tid, a.end, a.release_until, args)
    for pid, tid in sorted(lanes):
        tr.meta("thread_name", pid, tid, {"name": f"lane {tid}"})
        tr.meta("thread_sort_index", pid, tid, {"sort_index": tid})


def _queue(run: Run, tr: _Trace, pid: int) -> None:
    """Waits in the queue, packed into as few rows as possible."""
    stretches = sorted(
        (iv.start, iv.end, job.id)
        for job in run.jobs.values()
        for iv in job.intervals
        if iv.state == "pending" and iv.end > iv.start
    )
    rows: list[float] = []
    for start, end, job_id in stretches:
        for n, until in enumerate(rows):
            if until <= start:
                rows[n] = end
                break
        else:
            n = len(rows)
            rows.append(end)
        job = run.jobs[job_id]
        labels = {label for s, e, label in reason_segments(job) if s < end and e > start} - {
            UNPLANNED
        }
        args = {"job": job.id, "model": job.model, "reasons": sorted(labels)}
        tr.span(job.input, "waiting", pid, n + 1, start, end, args)
    for n in range(len(rows)):
        tr.meta("thread_name", pid, n + 1, {"name": f"waiting {n + 1}"})
