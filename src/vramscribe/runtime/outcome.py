"""Turning a worker's result file into the user's output files."""

from __future__ import annotations

import json
from pathlib import Path

from vramscribe.outputs import render, write_atomic
from vramscribe.transcript import Transcript


def write_outputs(result: Path, outputs: list[tuple[str, Path]]) -> str | None:
    """Write every requested format atomically; the problem in words, or None if all went well."""
    try:
        transcript = Transcript.from_dict(json.loads(result.read_text()))
        for fmt, path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, render(transcript, fmt))
    except (OSError, ValueError, KeyError) as exc:
        return f"cannot write outputs: {exc}"
    return None
