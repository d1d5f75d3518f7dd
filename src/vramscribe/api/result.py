"""What the Python API hands back: one :class:`Result` per file, and :class:`Event` s.

Both are plain frozen values built on the scheduler's thread from the runtime's
task, so a caller on another thread never sees a job half-way through a change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vramscribe.core.jobs import JobState
from vramscribe.runtime.events import JobChanged, RunnerEvent, payload
from vramscribe.runtime.task import Task
from vramscribe.transcript import Segment, Transcript


@dataclass(frozen=True, slots=True)
class Result:
    """One file's outcome: its transcript, or ``error`` saying why there is none."""

    job_id: str
    path: Path
    """The input file, as it was submitted."""

    state: str
    """``completed``, ``failed`` or ``cancelled``."""

    error: str | None = None
    """Why the file has no transcript (None when it completed)."""

    language: str | None = None
    segments: tuple[Segment, ...] = ()
    """Timed segments; each has ``start``, ``end`` and ``text`` (and ``words`` if asked for)."""

    duration_s: float = 0.0
    """Length of the audio, in seconds."""

    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent: ``wait_s`` (queued), ``load_s``, ``transcribe_s``, and the engine's own."""

    outputs: dict[str, Path] = field(default_factory=dict)
    """The files written, by format (empty unless formats were asked for)."""

    @property
    def ok(self) -> bool:
        return self.state == JobState.COMPLETED.value

    @property
    def text(self) -> str:
        """The whole transcript as one line ("" for a file that failed)."""
        return " ".join(t for t in (s.text.strip() for s in self.segments) if t)


def result_of(task: Task, result_file: Path | None) -> Result:
    """The result of a task that reached a final state (``result_file``: the worker's)."""
    job = task.job
    timings = {
        name: value
        for name, value in (("wait_s", task.wait_s), ("load_s", task.load_s),
                            ("transcribe_s", task.transcribe_s))
        if value is not None
    }  # fmt: skip
    base = Result(
        job.id,
        task.input,
        job.state.value,
        duration_s=job.audio_s,
        timings=timings,
        outputs={fmt: path for fmt, path in task.outputs},
    )
    if job.state is not JobState.COMPLETED or result_file is None:
        error = job.error or (job.history[-1].reason if job.history else job.state.value)
        return replace(base, error=error)
    try:
        transcript = Transcript.from_dict(json.loads(result_file.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        return replace(base, state=JobState.FAILED.value, error=f"no transcript: {exc}")
    return replace(
        base,
        language=transcript.language,
        segments=transcript.segments,
        duration_s=transcript.duration_s,
        timings={**transcript.timings, **timings},
    )


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a job, as the service's event stream sends it."""

    type: str
    """``job`` (a new state), ``loaded``, ``progress``, ``segment``, ``failure``,
    ``released`` or ``reason``."""

    job_id: str
    state: str
    """The job's state when the event happened."""

    data: dict[str, Any] = field(default_factory=dict)
    """The event's own fields (``progress_s``, ``segment``, ``reason``, ``message``...)."""


def event_of(event: RunnerEvent, task: Task) -> Event:
    data = payload(event)
    del data["type"]
    if isinstance(event, JobChanged):
        data["reason"] = task.job.history[-1].reason if task.job.history else ""
    data.setdefault("progress_s", task.progress_s)
    return Event(event.type, task.job.id, task.job.state.value, data)


def result_from_service(job: dict[str, Any], transcript: dict[str, Any] | None) -> Result:
    """A service job (``GET /v1/jobs/{id}``) and its json transcript, as a :class:`Result`."""
    base = Result(str(job["id"]), Path(str(job.get("input") or "")), str(job["status"]))
    if transcript is None:
        return replace(base, error=str(job.get("error") or job["status"]))
    parsed = Transcript.from_dict(transcript)
    return replace(
        base,
        language=parsed.language,
        segments=parsed.segments,
        duration_s=parsed.duration_s,
        timings=dict(parsed.timings),
    )
