"""The worker protocol: what the runtime sends a worker and what the worker says back.

A worker reads :class:`WorkerSpec` lines (JSON, one job each) on stdin and
writes one JSON object per line on stdout. It serves one job at a time: it
says ``started`` once its imports are done, ``loaded`` once the model is in
memory (first job only), then progress, segments and ``done`` for each job,
and waits for the next line; end of input means "exit". Both sides use these
classes, so a message is typed from the moment it is read; failure kinds
travel as values, never as text to be parsed back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from vramscribe.core.retry import FailureKind


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One job for one worker: the input, where to put the result, and the engine.

    ``resume_from_s`` > 0: earlier attempts finished the segments up to there, so
    only the rest of the file is transcribed."""

    input: str
    result: str
    attempt: int
    engine: dict[str, Any]
    resume_from_s: float = 0.0

    def to_json(self) -> str:
        """One line of the worker's input (without the newline)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        return cls(
            str(data["input"]),
            str(data["result"]),
            int(data["attempt"]),
            data["engine"],
            float(data.get("resume_from_s", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Started:
    """The interpreter and the engine's libraries are up; the model load begins now."""

    start_s: float


@dataclass(frozen=True, slots=True)
class Loaded:
    """The model is in memory; ``memory_mb`` is what this process holds for it."""

    memory_mb: float
    load_s: float


@dataclass(frozen=True, slots=True)
class Progress:
    done_s: float


@dataclass(frozen=True, slots=True)
class SegmentDone:
    """A finished segment, kept by the runner so that a retry resumes after it."""

    start: float
    end: float
    text: str
    words: list[dict[str, Any]] | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The transcript is written to ``result``."""

    result: str
    load_s: float = 0.0
    transcribe_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Failed:
    kind: FailureKind
    message: str


Message = Started | Loaded | Progress | SegmentDone | Done | Failed

_NAMES: dict[type[Any], str] = {
    Started: "started",
    Loaded: "loaded",
    Progress: "progress",
    SegmentDone: "segment",
    Done: "done",
    Failed: "error",
}
_TYPES = {name: cls for cls, name in _NAMES.items()}


def encode(message: Message) -> str:
    """One line of the protocol (without the newline)."""
    return json.dumps({"event": _NAMES[type(message)], **asdict(message)})


def decode(line: str) -> Message | None:
    """The message on ``line``, or None for anything that is not one (stray output)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cls = _TYPES.get(str(data.pop("event", "")))
    if cls is None:
        return None
    if cls is Failed:
        try:
            kind = FailureKind(str(data.get("kind")))
        except ValueError:
            kind = FailureKind.CRASH
        return Failed(kind, str(data.get("message", "")))
    try:
        message: Message = cls(**data)
    except TypeError:
        return None
    return message
