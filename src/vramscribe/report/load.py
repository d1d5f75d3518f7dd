"""Read a run's ``timeline.jsonl`` into typed structures the report can reason about.

The file is written by a background thread, in the order events were queued,
not in time order (a job's ``submitted`` line is written when the job first
changes state, and a ``loaded`` line is stamped a moment after the state change
it causes), so everything is sorted by time before it is interpreted. A run
that was killed can leave a half-written last line; unreadable lines are
skipped rather than failing the whole report.

Besides the raw events, this module derives what every consumer needs in the
same form: each job's state intervals, each attempt on a device (start, ready,
end, its load, failure and release), and a lane per attempt so that drawings
of one device never overlap.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vramscribe.errors import VramscribeError
from vramscribe.paths import data_dir
from vramscribe.report.run import (
    ACTIVE,
    FINAL,
    Attempt,
    DeviceInfo,
    DeviceSample,
    Failure,
    Interval,
    Job,
    Load,
    ReasonChange,
    Release,
    Run,
    StateChange,
)

__all__ = [
    "ACTIVE",
    "FINAL",
    "TIMELINE",
    "Attempt",
    "DeviceInfo",
    "DeviceSample",
    "Failure",
    "Interval",
    "Job",
    "Load",
    "ReasonChange",
    "Release",
    "Run",
    "StateChange",
    "build_run",
    "find_run",
    "load_run",
]

TIMELINE = "timeline.jsonl"
_STAMPED = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?$")
# A release is stamped when it is written, a little after the scheduler step that
# confirmed it (and may have started the next worker); within this, a lane is reused.
LANE_SLACK_S = 0.25


# -- finding a run ---------------------------------------------------------------------
def find_run(arg: str | None) -> Path:
    """The timeline file for ``arg``: the latest run, a folder or file path, or a run name."""
    runs = data_dir() / "runs"
    if arg is None:
        return _latest(runs)
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        timeline = path / TIMELINE
        if not timeline.is_file():
            raise VramscribeError(f"{path} has no {TIMELINE}; is it a vramscribe run folder?")
        return timeline
    if "/" in arg or "\\" in arg or arg in (".", ".."):
        raise VramscribeError(f"no such run folder or timeline file: {arg}")
    named = runs / arg
    if not (named / TIMELINE).is_file():
        raise VramscribeError(f"no run named {arg!r} under {runs}")
    return named / TIMELINE


def _latest(runs: Path) -> Path:
    candidates = [d for d in runs.iterdir() if (d / TIMELINE).is_file()] if runs.is_dir() else []
    if not candidates:
        raise VramscribeError(
            f"no runs found under {runs}; run `vramscribe transcribe` first or name a run folder"
        )
    return max(candidates, key=_created_key) / TIMELINE


def _created_key(folder: Path) -> tuple[str, int]:
    """Run folders are named by creation time (``-N`` when several share a second)."""
    m = _STAMPED.match(folder.name)
    if m:
        return m.group(1), int(m.group(2) or 0)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(folder.stat().st_mtime))
    return stamp, 0


# -- reading -------------------------------------------------------------------------
def load_run(path: Path) -> Run:
    """Read a run folder (or a timeline file) into a :class:`Run`."""
    timeline = path / TIMELINE if path.is_dir() else path
    try:
        lines = timeline.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise VramscribeError(f"cannot read {timeline}: {exc.strerror or exc}") from None
    events = list(_parse(lines))
    if not events:
        raise VramscribeError(f"{timeline} holds no events")
    folder = timeline.parent
    return build_run(events, folder, folder.name if timeline.name == TIMELINE else timeline.stem)


def _parse(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("t"), int | float) and "type" in item:
            yield item


def build_run(events: Sequence[dict[str, Any]], path: Path, name: str) -> Run:
    """Interpret timeline events (any order) as a :class:`Run`."""
    ordered = sorted(events, key=lambda e: float(e["t"]))
    t0 = float(ordered[0]["t"])
    t_end = float(ordered[-1]["t"])
    ended = False
    devices: list[DeviceInfo] = []
    settings: dict[str, Any] = {}
    jobs: dict[str, Job] = {}
    samples: dict[str, list[DeviceSample]] = {}
    for e in ordered:
        kind = e["type"]
        t = float(e["t"])
        if kind == "run_start":
            devices = [DeviceInfo(str(d["id"]), str(d.get("kind", ""))) for d in e["devices"]]
            settings = dict(e.get("settings", {}))
        elif kind == "run_end":
            ended = True
        elif kind == "device":
            samples.setdefault(str(e["device"]), []).append(_sample(e))
        elif "job" in e:
            _job_event(jobs, e, kind, t)
    run = Run(path, name, t0, t_end, ended, devices, settings, _in_order(jobs), samples)
    for job in run.jobs.values():
        _derive(job, run.t_end)
    _assign_lanes(run.attempts)
    return run


def _in_order(jobs: dict[str, Job]) -> dict[str, Job]:
    """Jobs by submission (then id), whatever order the file listed them in."""

    def key(job: Job) -> tuple[float, int, str]:
        first = (
            job.submitted
            if job.submitted is not None
            else min((c.t for c in job.states), default=float("inf"))
        )
        return first, int(job.id) if job.id.isdigit() else -1, job.id

    return {job.id: job for job in sorted(jobs.values(), key=key)}


def _sample(e: dict[str, Any]) -> DeviceSample:
    return DeviceSample(
        float(e["t"]),
        float(e.get("total_mb", 0.0)),
        float(e.get("free_mb", 0.0)),
        float(e.get("ours_mb", 0.0)),
        float(e.get("others_mb", 0.0)),
        float(e.get("reserved_mb", 0.0)),
        int(e.get("instances", 0)),
        int(e.get("loading", 0)),
        int(e.get("pending", 0)),
    )


def _job_event(jobs: dict[str, Job], e: dict[str, Any], kind: str, t: float) -> None:
    job_id = str(e["job"])
    job = jobs.get(job_id)
    if job is None:
        job = jobs[job_id] = Job(job_id, str(e.get("model", "")), str(e.get("input", "")))
    if "audio_s" in e:
        job.audio_s = float(e["audio_s"])
    if "priority" in e:
        job.priority = int(e["priority"])
    if kind == "submitted":
        job.submitted = t
    elif kind == "state":
        device = e.get("device")
        job.states.append(
            StateChange(
                t,
                str(e["from"]),
                str(e["to"]),
                str(e.get("reason", "")),
                None if device is None else str(device),
                int(e.get("attempt", 0)),
            )
        )
    elif kind == "loaded":
        job.loads.append(
            Load(
                t,
                str(e.get("device", "")),
                float(e.get("load_s", 0.0)),
                float(e.get("memory_mb", 0.0)),
                float(e.get("reserved_mb", 0.0)),
            )
        )
    elif kind == "released":
        job.releases.append(
            Release(
                t, str(e.get("device", "")), float(e.get("release_s", 0.0)), int(e.get("pid", 0))
            )
        )
    elif kind == "failure":
        device = e.get("device")
        job.failures.append(
            Failure(
                t,
                str(e.get("failure", "crash")),
                str(e.get("message", "")),
                None if device is None else str(device),
            )
        )
    elif kind == "reason":
        job.reasons.append(ReasonChange(t, str(e.get("reason", ""))))
    elif kind == "progress":
        job.progress_s = float(e.get("done_s", job.progress_s))


def _derive(job: Job, t_end: float) -> None:
    """Turn the job's state changes into intervals and attempts."""
    start = job.submitted
    if start is None:
        start = job.states[0].t if job.states else t_end
    state, device, attempt, reason = "pending", None, 0, "submitted"
    current: Attempt | None = None
    for change in job.states:
        job.intervals.append(Interval(state, start, change.t, device, attempt, reason))
        if change.to_state in ACTIVE and change.from_state not in ACTIVE:
            current = Attempt(
                job.id,
                job.model,
                job.input,
                change.attempt,
                change.device or "?",
                change.t,
                change.t if change.to_state == "processing" else None,
                t_end,
                "running",
                change.reason,
            )
            job.attempts.append(current)
        elif change.to_state == "processing" and current is not None:
            current.ready = change.t
        elif change.to_state not in ACTIVE and current is not None:
            current.end = change.t
            current.outcome = change.to_state
            current = None
        start, state, reason = change.t, change.to_state, change.reason
        device, attempt = change.device, change.attempt
    if state not in FINAL:
        job.intervals.append(Interval(state, start, max(start, t_end), device, attempt, reason))
    _attach(job)


def _attach(job: Job) -> None:
    """Give each attempt its load and failure (latest attempt started by then) and release."""
    for load in job.loads:
        owner = _owner(job.attempts, load.t)
        if owner is not None and owner.load is None:
            owner.load = load
    for failure in job.failures:
        owner = _owner(job.attempts, failure.t)
        if owner is not None and owner.failure is None:
            owner.failure = failure
    # Releases are confirmed in the order the job's workers exited: one per ended attempt.
    ended = [a for a in job.attempts if a.outcome != "running"]
    for attempt, release in zip(ended, sorted(job.releases, key=lambda r: r.t), strict=False):
        attempt.release = release


def _owner(attempts: Sequence[Attempt], t: float) -> Attempt | None:
    owner = None
    for a in attempts:
        if a.start <= t:
            owner = a
    return owner


def _assign_lanes(attempts: Sequence[Attempt]) -> None:
    """Lowest free lane per device: free once its attempt has ended and its memory is back.

    The release is allowed ``LANE_SLACK_S`` of overlap (it is stamped late), and
    the drawn release is cut where the lane's next attempt starts.
    """
    last: dict[str, list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: (a.start, a.job)):
        a.release_until = a.release.t if a.release is not None and a.release.t > a.end else None
        lanes = last.setdefault(a.device, [])
        for n, prev in enumerate(lanes):
            if prev.end <= a.start and prev.held_until <= a.start + LANE_SLACK_S:
                a.lane = n
                lanes[n] = a
                if prev.release_until is not None:
                    prev.release_until = min(prev.release_until, a.start)
                break
        else:
            a.lane = len(lanes)
            lanes.append(a)
