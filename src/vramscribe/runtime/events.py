"""What the runner tells its listeners: one typed event per thing that happened.

Listeners (the timeline, the store, the CLI views, the service's event
stream and its metrics) match on the class; ``payload`` gives the public,
JSON-ready form that the timeline records and the event stream sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from vramscribe.core.retry import FailureKind
from vramscribe.runtime.task import Task

log = logging.getLogger("vramscribe.runtime")


@dataclass(frozen=True, slots=True)
class JobChanged:
    """The job moved to a new state (its history has the new entries)."""

    task: Task
    type: ClassVar[str] = "job"


@dataclass(frozen=True, slots=True)
class InstanceLoaded:
    task: Task
    device: str
    load_s: float
    memory_mb: float
    reserved_mb: float
    type: ClassVar[str] = "loaded"


@dataclass(frozen=True, slots=True)
class ProgressMade:
    task: Task
    type: ClassVar[str] = "progress"


@dataclass(frozen=True, slots=True)
class SegmentTranscribed:
    task: Task
    start: float
    end: float
    text: str
    type: ClassVar[str] = "segment"


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    task: Task
    kind: FailureKind
    message: str
    device: str
    type: ClassVar[str] = "failure"


@dataclass(frozen=True, slots=True)
class MemoryReleased:
    """An instance's memory is confirmed back, ``release_s`` after its process exited."""

    task: Task
    pid: int
    device: str
    release_s: float
    type: ClassVar[str] = "released"


@dataclass(frozen=True, slots=True)
class ReasonChanged:
    task: Task
    reason: str
    type: ClassVar[str] = "reason"


@dataclass(frozen=True, slots=True)
class Tick:
    """One scheduler iteration ended (views refresh, the timeline samples devices)."""

    type: ClassVar[str] = "tick"


RunnerEvent = (
    JobChanged
    | InstanceLoaded
    | ProgressMade
    | SegmentTranscribed
    | AttemptFailed
    | MemoryReleased
    | ReasonChanged
    | Tick
)


def payload(event: RunnerEvent) -> dict[str, Any]:
    """The event's own fields, JSON-ready, without the task (``type`` first)."""
    out: dict[str, Any] = {"type": event.type}
    for f in fields(event):
        if f.name == "task":
            continue
        value = getattr(event, f.name)
        if isinstance(event, AttemptFailed) and f.name == "kind":
            out["failure"] = value.value
        elif isinstance(event, SegmentTranscribed):
            out.setdefault("segment", {})[f.name] = value
        else:
            out[f.name] = value
    return out


def task_of(event: RunnerEvent) -> Task | None:
    return None if isinstance(event, Tick) else event.task


def publish(listeners: Iterable[Callable[[RunnerEvent], None]], event: RunnerEvent) -> None:
    """Tell every listener; one that raises is logged and the rest still hear it.

    A broken listener (a full disk under the timeline, a store hiccup) must not
    stop the scheduler, which would strand every running worker.
    """
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("event listener failed on %s", event.type)
