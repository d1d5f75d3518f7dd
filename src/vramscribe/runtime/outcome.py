"""Turning a worker's result file into the user's output files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vramscribe.outputs import render, write_atomic
from vramscribe.transcript import Transcript


def write_outputs(
    result: Path, outputs: list[tuple[str, Path]], layout: Mapping[str, Any] | None = None
) -> str | None:
    """Write every requested format atomically; the problem in words, or None if all went well.

    The words name the file that could not be written and the system's reason
    (``No space left on device``, ``Read-only file system``, ``Permission denied``).
    """
    try:
        transcript = Transcript.from_dict(json.loads(result.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        return f"cannot read the transcript {result}: {exc}"
    for fmt, path in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, render(transcript, fmt, layout))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return f"cannot write outputs: {path}: {why}"
    return None


def kept_message(problem: str, result: Path) -> str:
    """A failed write's error: what failed, and where the finished transcript waits."""
    return (
        f"{problem}; the transcript is kept at {result} "
        "and a rerun writes the outputs from it without transcribing again"
    )
