"""The engine protocol and the options every engine understands.

Options travel from the parent to a worker process as JSON, so they are a
plain dataclass with ``to_dict``/``from_dict`` and no live objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from vramscribe.transcript import Segment, Transcript

ProgressFn = Callable[[float], None]
SegmentFn = Callable[[Segment, str], None]
"""Called with each finished segment and the language the transcript is in."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    engine: str = "faster-whisper"
    """``faster-whisper`` or ``fake``."""
    model: str = "tiny.en"
    """What the user typed; reported in outputs."""
    model_path: str = ""
    """What the engine loads: a folder, or a name faster-whisper may download."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    device_index: int = 0
    compute_type: str = "default"
    batch_size: int = 1
    cpu_threads: int = 0
    language: str | None = None
    beam_size: int = 5
    vad_filter: bool = False
    word_timestamps: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    fake: dict[str, Any] = field(default_factory=dict)
    """Behaviour of the fake engine (memory, speed, failures); ignored by real ones."""
    decoding: dict[str, Any] = field(default_factory=dict)
    """Whisper decoding and VAD options (:mod:`vramscribe.decoding`), only those set."""
    layout: dict[str, Any] = field(default_factory=dict)
    """Subtitle layout (max_line_width, max_line_count, highlight_words), used when writing."""
    channel: int | None = None
    """Transcribe only this channel (0-based) of the input; None: all, mixed down."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        return cls(**data)


# What a loaded instance was loaded with: a job that differs here needs another instance.
# Everything else (language, beam, batch size, prompts, VAD) is chosen per transcription.
LOAD_FIELDS = ("engine", "model_path", "device", "device_index", "compute_type", "cpu_threads")
# The fake engine's load-time settings (its failure settings are per job).
FAKE_LOAD_FIELDS = ("device_path", "memory_mb", "load_s", "speed_x")


def engine_key(options: EngineOptions) -> str:
    """The key a warm instance is matched by: the options its model was loaded with."""
    data = {name: getattr(options, name) for name in LOAD_FIELDS}
    data["model"] = options.model_path or options.model
    data["fake"] = {k: options.fake[k] for k in FAKE_LOAD_FIELDS if k in options.fake}
    return json.dumps(data, sort_keys=True)


class Engine(Protocol):
    def load(self) -> float:
        """Load the model; returns the memory in MB this process now holds for it."""
        ...

    def transcribe(
        self,
        audio: Any,
        job: EngineOptions,
        attempt: int,
        on_progress: ProgressFn,
        on_segment: SegmentFn,
        start_s: float = 0.0,
    ) -> Transcript:
        """Transcribe one file's samples (16 kHz mono float32, decoded once by the worker)
        with the per-job options of ``job``; the model stays loaded.

        ``start_s`` > 0 resumes a file an earlier attempt did not finish: only the
        audio from there on is transcribed, with timestamps still counted from the
        file's start, so the runner can join the parts."""
        ...
