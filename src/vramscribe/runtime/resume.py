"""Resuming a file after a failed attempt, and joining the parts.

A worker reports each segment it finishes. The runner keeps them on the task
across attempts, so after a crash, an out-of-memory failure or a hang the next
attempt transcribes from the end of the last finished segment (the engine's
``start_s``) instead of paying for the whole file again; on success the kept
segments are put in front of the new attempt's own. The language of the first
attempt is kept too: a resumed attempt must not detect another one from the
middle of a file (faster-whisper detects from where decoding starts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vramscribe.outputs import write_atomic
from vramscribe.protocol import SegmentDone
from vramscribe.runtime.task import Task
from vramscribe.transcript import Segment, Transcript, Word


def begin_attempt(task: Task, engine: dict[str, Any]) -> float:
    """Where the attempt now starting begins (0: the file's start); fixes its language."""
    start = task.kept[-1].end if task.kept else 0.0
    task.kept_before = len(task.kept)
    task.progress_s = start  # what is kept is done
    if start > 0:
        task.resumed_from_s.append(start)
        if engine.get("language") is None and task.language:
            engine["language"] = task.language
    return start


def keep(task: Task, message: SegmentDone) -> None:
    """Remember a finished segment (one that ends after the last kept one)."""
    if task.kept and message.end <= task.kept[-1].end:
        return
    words = None
    if message.words is not None:
        words = tuple(Word.from_dict(w) for w in message.words)
    task.kept.append(Segment(message.start, message.end, message.text, words))
    if message.language and task.language is None:
        task.language = message.language


def resume_words(task: Task, start: float) -> str:
    """The history's words for a resumed attempt ("" for one from the start)."""
    if start <= 0:
        return ""
    count = task.kept_before
    return f", resuming at {start:.1f} s after {count} finished segment{'s' * (count != 1)}"


def finish_result(result: Path, task: Task) -> str | None:
    """Rewrite the worker's result as the whole file's transcript: the segments kept from
    earlier attempts, then this attempt's, with the settings it ran with. The problem
    in words, or None."""
    try:
        _join(result, task)
    except (OSError, ValueError, KeyError) as exc:
        return f"cannot read the worker's result: {exc}"
    return None


def _join(result: Path, task: Task) -> None:
    transcript = Transcript.from_dict(json.loads(result.read_text()))
    prior = tuple(task.kept[: task.kept_before])
    recorded = {**task.ran_with, "attempts": task.job.attempts}
    if task.resumed_from_s:
        recorded["resumed_from_s"] = list(task.resumed_from_s)
    joined = Transcript(
        prior + transcript.segments,
        transcript.language,
        transcript.duration_s,
        transcript.model,
        transcript.timings,
        recorded,
    )
    write_atomic(result, json.dumps(joined.to_dict()))
