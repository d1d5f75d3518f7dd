"""What a user asks for when they submit one job, checked once for the CLI and the service.

:class:`JobRequest`'s fields are the per-job options with their defaults, one
docstring each; the CLI's options and the service's form and JSON fields are
read into it, and it refuses anything out of range with
:class:`~vramscribe.errors.InvalidRequest`, naming the field. Nothing here
touches the disk, the models or the store: that is
:func:`vramscribe.submit.build.build_job`'s and :meth:`vramscribe.submit.run.Run.submit`'s.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.core.jobs import (
    DEFAULT_PRIORITY,
    PRIORITY_MAX,
    PRIORITY_MIN,
    PRIORITY_NAMES,
    parse_priority,
)
from vramscribe.decoding import BY_FIELD, check, read_fields
from vramscribe.errors import InvalidRequest
from vramscribe.outputs import FORMATS

COMPUTE_TYPES = ("default", "auto", "int8", "int8_float16", "float16", "float32")
ENGINES = ("faster-whisper", "fake")
AUTO_BATCH = 0
"""``batch_size`` for "the planner chooses from free memory when the job starts"."""
MAX_BATCH_SIZE = 64
MIN_BEAM_SIZE, MAX_BEAM_SIZE = 1, 20
DEFAULT_FORMATS = ("txt", "srt")
"""What a CLI batch writes unless told otherwise (the service writes every format)."""

# What a client may set per job, by the names the service's fields use.
OPTION_FIELDS = (
    "model", "language", "priority", "beam_size", "vad_filter", "word_timestamps",
    "initial_prompt", "hotwords", "compute_type", "batch_size",
    "split_channels", "channel_names",
)  # fmt: skip
ALL_FIELDS = OPTION_FIELDS + tuple(name for name in BY_FIELD if name not in OPTION_FIELDS)
"""Every field a client may set: :data:`OPTION_FIELDS` and the Whisper options' names."""


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """One file to transcribe and how; validated when it is made."""

    input: Path
    """The audio file (an upload the service saved, or a file the CLI found)."""

    model: str = "tiny.en"
    """Model name or folder, as the user typed it."""

    priority: int = DEFAULT_PRIORITY
    """0-100; names (low, normal, high, urgent) are read by :func:`parse_priority`."""

    compute_type: str = "default"
    """Weights precision; default: float16 on a GPU, int8 on the CPU."""

    batch_size: int = AUTO_BATCH
    """1-64, or 0 (auto): the planner picks it per file from free memory."""

    language: str | None = None
    """Language code; detected when None."""

    beam_size: int = 5
    """Beam search width, 1-20."""

    vad_filter: bool = False
    """Skip silence with the VAD filter."""

    word_timestamps: bool = False
    """Include word timings in json output."""

    initial_prompt: str | None = None
    """Text that sets style and vocabulary."""

    hotwords: str | None = None
    """Words to bias towards, e.g. product names."""

    outputs: tuple[tuple[str, Path], ...] = ()
    """Each format to write, with the path its transcript goes to."""

    engine: str = "faster-whisper"
    """``faster-whisper``, or ``fake`` (tests and demos without models)."""

    fake: Mapping[str, Any] = field(default_factory=dict)
    """Behaviour of the fake engine (memory, speed, failures); ignored by real ones."""

    filename: str | None = None
    """The name to show for the input (what a client uploaded it as); display only."""

    input_root: Path | None = None
    """The folder a CLI batch found the input under (outputs mirror the tree below it)."""

    job_id: str = field(default_factory=new_job_id)
    """The new job's id (the service names transcript files after it before submitting)."""

    # -- the options Whisper users know (vramscribe.decoding) --------------------------
    decoding: Mapping[str, Any] = field(default_factory=dict)
    """Decoding and VAD options by faster-whisper's names (task, temperature, best_of, ...);
    only those set, passed to faster-whisper unchanged."""

    layout: Mapping[str, Any] = field(default_factory=dict)
    """Subtitle layout: max_line_width, max_line_count, highlight_words."""

    # -- channels (vramscribe.channels) ---------------------------------------------------
    split_channels: bool = False
    """Transcribe each channel on its own and merge them by time with a speaker label each."""

    channel_names: tuple[str, ...] = ()
    """The speakers' labels, one per channel (default: channel 1, channel 2, ...)."""

    channel: int | None = None
    """Only this channel (0-based): set on the child jobs of a split file."""

    def __post_init__(self) -> None:
        _check_priority(self.priority)
        if not self.model.strip():
            raise InvalidRequest("model must not be empty", "model")
        if self.compute_type not in COMPUTE_TYPES:
            raise InvalidRequest(
                f"compute_type must be one of {', '.join(COMPUTE_TYPES)}", "compute_type"
            )
        if not AUTO_BATCH <= self.batch_size <= MAX_BATCH_SIZE:
            raise InvalidRequest(_batch_message(self.batch_size), "batch_size")
        if not MIN_BEAM_SIZE <= self.beam_size <= MAX_BEAM_SIZE:
            raise InvalidRequest(_beam_message(self.beam_size), "beam_size")
        if self.engine not in ENGINES:
            raise InvalidRequest(f"engine must be one of {', '.join(ENGINES)}", "engine")
        _check_whisper_options(self)
        unknown = [fmt for fmt, _ in self.outputs if fmt not in FORMATS]
        if unknown:
            raise InvalidRequest(
                f"unknown output format {unknown[0]!r}; formats: {', '.join(FORMATS)}", "outputs"
            )

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(fmt for fmt, _ in self.outputs)

    @classmethod
    def parse(cls, values: Mapping[str, object], **base: Any) -> JobRequest:
        """A request from loosely typed values (form fields, JSON, the OpenAI endpoint).

        ``base`` gives the fields the caller decides (input, outputs, engine, and
        defaults such as the service's model); each of :data:`OPTION_FIELDS` that
        ``values`` holds (not None, not empty) is parsed and overrides it.
        """
        given = dict(base)
        for name in OPTION_FIELDS:
            value = values.get(name)
            if value is not None and value != "":
                given[name] = _PARSERS[name](value)
        decoding, layout = read_fields(values)
        given["decoding"] = {**given.get("decoding", {}), **decoding}
        given["layout"] = {**given.get("layout", {}), **layout}
        return cls(**given)


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# The texts each option accepts, exactly: the service's API document publishes these
# patterns, so a value it calls valid is never refused and one it calls invalid never
# accepted (names in any case, ASCII digits, spaces around allowed).
TEXT_PATTERNS = {
    name: f" *(?:{pattern}) *"
    for name, pattern in {
        "priority": "|".join([*map(_any_case, PRIORITY_NAMES), "0*(?:100|[1-9]?[0-9])"]),
        "beam_size": "0*(?:[1-9]|1[0-9]|20)",
        "batch_size": f"{_any_case('auto')}|0*(?:[1-5]?[0-9]|6[0-4])",
    }.items()
}
_TEXTS = {name: re.compile(pattern) for name, pattern in TEXT_PATTERNS.items()}


def parse_batch_size(value: object) -> int:
    """``auto`` (or 0) for the planner's choice, else a batch size of 1-64."""
    text = str(_whole(value))
    if isinstance(value, bool) or not _TEXTS["batch_size"].fullmatch(text):
        raise InvalidRequest(_batch_message(value), "batch_size")
    return AUTO_BATCH if text.strip().lower() == "auto" else int(text)


def parse_beam_size(value: object) -> int:
    if isinstance(value, str) and not _TEXTS["beam_size"].fullmatch(value):
        raise InvalidRequest(_beam_message(value), "beam_size")
    number = _integer(value, "beam_size", _beam_message(value))
    if not MIN_BEAM_SIZE <= number <= MAX_BEAM_SIZE:
        raise InvalidRequest(_beam_message(value), "beam_size")
    return number


def parse_request_priority(value: object) -> int:
    """A priority name or number, as :func:`parse_priority` reads it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest(f"priority must be a name or a number, got {value!r}", "priority")
    if isinstance(value, str) and not _TEXTS["priority"].fullmatch(value):
        names = ", ".join(PRIORITY_NAMES)
        raise InvalidRequest(
            f"priority must be one of {names} or a number "
            f"{PRIORITY_MIN}-{PRIORITY_MAX}, got {value!r}",
            "priority",
        )
    try:
        return parse_priority(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), "priority") from None


def parse_flag(value: object) -> bool:
    if not isinstance(value, str | int | float | bool):
        raise InvalidRequest(f"expected true or false, got {value!r}", "flag")
    return str(value).lower() in ("1", "true", "yes", "on")


def _check_whisper_options(request: JobRequest) -> None:
    check(request.decoding, request.layout)
    if request.decoding.get("task") == "translate" and request.model.endswith(".en"):
        raise InvalidRequest(
            f"translate needs a multilingual model; {request.model} is English-only", "task"
        )


def parse_channel_names(value: object) -> tuple[str, ...]:
    """``agent,customer`` (or a list): one speaker label per channel."""
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    names = tuple(str(p).strip() for p in parts)
    if not all(names) or len(set(names)) != len(names):
        raise InvalidRequest(
            f"channel_names must be distinct, non-empty names, got {value!r}", "channel_names"
        )
    return names


def _check_priority(value: int) -> None:
    try:
        parse_priority(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), "priority") from None


def _text(name: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string, got {value!r}", name)
        return value

    return parse


def _whole(value: object) -> object:
    """JSON numbers such as ``4.0`` are integers too (JSON Schema says so)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(value: object, name: str, message: str) -> int:
    value = _whole(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise InvalidRequest(message, name)


def _batch_message(value: object) -> str:
    return f"batch size must be auto or 1-{MAX_BATCH_SIZE}, got {value!r}"


def _beam_message(value: object) -> str:
    return f"beam size must be {MIN_BEAM_SIZE}-{MAX_BEAM_SIZE}, got {value!r}"


_PARSERS: dict[str, Callable[[object], Any]] = {
    "model": _text("model"),
    "language": _text("language"),
    "priority": parse_request_priority,
    "beam_size": parse_beam_size,
    "vad_filter": parse_flag,
    "word_timestamps": parse_flag,
    "initial_prompt": _text("initial_prompt"),
    "hotwords": _text("hotwords"),
    "compute_type": _text("compute_type"),
    "batch_size": parse_batch_size,
    "split_channels": parse_flag,
    "channel_names": parse_channel_names,
}
