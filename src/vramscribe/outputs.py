"""Turning transcripts into files, and knowing which files a rerun can skip.

Outputs are written atomically because jobs are killed (out of memory, Ctrl-C,
preemption) in the middle of runs: a file that exists must be complete, which is
what lets :func:`missing_outputs` treat "the file exists" as "this job is done".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vramscribe.decoding import needs_words
from vramscribe.subtitles import has_words, word_cues
from vramscribe.transcript import Transcript

FORMATS = ("txt", "srt", "vtt", "tsv", "json")
ALL_FORMATS = "all"
"""Asks for every one of :data:`FORMATS`, as the ``whisper`` CLI's ``--output_format all``."""
SCHEMA_ID = "vramscribe.transcript/1"

_NUMBER: dict[str, Any] = {"type": "number"}
_SECONDS: dict[str, Any] = {"type": "number", "minimum": 0}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "vramscribe transcript",
    "type": "object",
    "required": ["schema", "text", "language", "duration_s", "model", "timings", "segments"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "text": {"type": "string"},
        "language": {"type": "string"},
        "duration_s": _SECONDS,
        "model": {"type": "string"},
        "timings": {"type": "object", "additionalProperties": _NUMBER},
        "settings": {
            "type": "object",
            "properties": {
                "device": {"type": "string"},
                "compute_type": {"type": "string"},
                "batch_size": {"type": "integer", "minimum": 1},
                "attempts": {"type": "integer", "minimum": 1},
                "resumed_from_s": {"type": "array", "items": _SECONDS},
            },
        },
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "end", "text"],
                "additionalProperties": False,
                "properties": {
                    "start": _SECONDS,
                    "end": _SECONDS,
                    "text": {"type": "string"},
                    "speaker": {"type": "string"},
                    "words": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["start", "end", "word", "probability"],
                            "additionalProperties": False,
                            "properties": {
                                "start": _SECONDS,
                                "end": _SECONDS,
                                "word": {"type": "string"},
                                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _timestamp(seconds: float, separator: str) -> str:
    # Round once, in whole milliseconds, so 59.9996 becomes 00:01:00.000 rather
    # than an impossible 00:00:59.1000.
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """Segments as subtitle cues: one line of text, never ending before they start.

    A blank line ends a cue in both srt and vtt, and "-->" inside vtt text is a
    syntax error, so the text is flattened and the arrow defused.
    """
    cues = []
    for seg in transcript.segments:
        text = " ".join(seg.labelled_text.split()).replace("-->", "->")
        if seg.text.strip():
            start = max(0.0, seg.start)
            cues.append((start, max(start, seg.end), text))
    return cues


def _layout_cues(transcript: Transcript, layout: Mapping[str, Any] | None, sep: str
                 ) -> list[tuple[str, str, str]]:  # fmt: skip
    """Cues as the ``whisper`` writers lay them out when a layout asks for it and words are
    known; else one cue per segment."""
    if layout and needs_words(layout) and has_words(transcript):
        return word_cues(transcript, layout, lambda t: _timestamp(t, sep))
    return [(_timestamp(a, sep), _timestamp(b, sep), text) for a, b, text in _cues(transcript)]


def _render_srt(transcript: Transcript, layout: Mapping[str, Any] | None = None) -> str:
    blocks = [
        f"{i}\n{start} --> {end}\n{text}\n"
        for i, (start, end, text) in enumerate(_layout_cues(transcript, layout, ","), start=1)
    ]
    return "\n".join(blocks)


def _render_vtt(transcript: Transcript, layout: Mapping[str, Any] | None = None) -> str:
    blocks = [
        f"{start} --> {end}\n{text}\n" for start, end, text in _layout_cues(transcript, layout, ".")
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _render_tsv(transcript: Transcript) -> str:
    """The ``whisper`` CLI's tsv: a header, then start and end in integer milliseconds."""
    rows = ["start\tend\ttext\n"]
    for seg in transcript.segments:
        text = seg.labelled_text.replace("\t", " ")
        rows.append(f"{round(1000 * seg.start)}\t{round(1000 * seg.end)}\t{text}\n")
    return "".join(rows)


def _render_txt(transcript: Transcript) -> str:
    lines = [s.labelled_text for s in transcript.segments if s.text.strip()]
    return "".join(f"{line}\n" for line in lines)


def _render_json(transcript: Transcript) -> str:
    doc = {"schema": SCHEMA_ID, "text": transcript.text, **transcript.to_dict()}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def render(transcript: Transcript, fmt: str, layout: Mapping[str, Any] | None = None) -> str:
    """Render ``transcript`` in one of :data:`FORMATS`; ``layout`` shapes srt and vtt cues
    (see :mod:`vramscribe.subtitles`)."""
    if fmt == "txt":
        return _render_txt(transcript)
    if fmt == "srt":
        return _render_srt(transcript, layout)
    if fmt == "vtt":
        return _render_vtt(transcript, layout)
    if fmt == "tsv":
        return _render_tsv(transcript)
    if fmt == "json":
        return _render_json(transcript)
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def load_json(text: str) -> Transcript:
    """Read a json output back, so finished work can be reused without re-running it."""
    return Transcript.from_dict(json.loads(text))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one.

    The temporary file sits in the same folder (``os.replace`` is only atomic
    within one file system) and is hidden and ends in ``.tmp`` so that discovery
    and resume never mistake it for real output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates files readable only by their owner; outputs are for sharing.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform lets a folder be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def output_path(input_file: Path, input_root: Path, fmt: str, out_dir: Path | None = None) -> Path:
    """Where the ``fmt`` output for ``input_file`` goes.

    Without ``out_dir`` it sits next to the input (``talk.mp3`` -> ``talk.srt``).
    With ``out_dir`` the input's path below ``input_root`` is mirrored there, so
    two ``intro.wav`` files in different subfolders do not overwrite each other.
    """
    input_file = Path(input_file)
    if out_dir is None:
        target = input_file.with_suffix(f".{fmt}")
    else:
        target = Path(out_dir) / _relative(input_file, Path(input_root)).with_suffix(f".{fmt}")
    # An input explicitly named e.g. notes.txt must never be overwritten by its own transcript.
    if _same_file(target, input_file):
        target = target.with_name(f"{input_file.name}.{fmt}")
    return target


def _relative(input_file: Path, input_root: Path) -> Path:
    for file, root in ((input_file, input_root), (input_file.resolve(), input_root.resolve())):
        try:
            return file.relative_to(root)
        except ValueError:
            continue
    return Path(input_file.name)


def _same_file(a: Path, b: Path) -> bool:
    return a == b or a.resolve() == b.resolve()


def missing_outputs(
    input_file: Path,
    input_root: Path,
    formats: Iterable[str],
    out_dir: Path | None = None,
) -> list[str]:
    """The formats still to write for ``input_file``; empty means a rerun can skip it."""
    return [
        fmt for fmt in formats if not output_path(input_file, input_root, fmt, out_dir).is_file()
    ]


__all__ = [
    "ALL_FORMATS",
    "FORMATS",
    "JSON_SCHEMA",
    "SCHEMA_ID",
    "load_json",
    "missing_outputs",
    "output_path",
    "render",
    "write_atomic",
]
