"""Pending reasons, normalised into one label per kind of wait, and the stretches they cover."""

from __future__ import annotations

import bisect
import re

from vramscribe.core.reasons import MEMORY_WAIT, UNPLANNED, normalise_reason
from vramscribe.report.load import Attempt, Job

__all__ = [
    "MEMORY_WAIT", "UNPLANNED", "is_warm", "memory_wait_devices", "normalise_reason",
    "reason_segments",
]  # fmt: skip


def memory_wait_devices(label: str) -> list[str]:
    return re.findall(MEMORY_WAIT + r" (\S+?)(?:;|$)", label)


def reason_segments(job: Job) -> list[tuple[float, float, str]]:
    """(start, end, normalised reason) for every stretch the job was pending.

    The runner only records a reason when it changes (a new kind at once, new words
    of the same kind at most every ``REASON_REFRESH_S``), so a stretch begins with
    the latest reason recorded before it (even from an earlier stretch).
    """
    out: list[tuple[float, float, str]] = []
    times = [r.t for r in job.reasons]
    for iv in job.intervals:
        if iv.state != "pending" or iv.end <= iv.start:
            continue
        k = bisect.bisect_right(times, iv.start)
        label = normalise_reason(job.reasons[k - 1].reason) if k else UNPLANNED
        t = iv.start
        while k < len(times) and times[k] < iv.end:
            out.append((t, times[k], label))
            t, label = times[k], normalise_reason(job.reasons[k].reason)
            k += 1
        out.append((t, iv.end, label))
    return out


def is_warm(a: Attempt) -> bool:
    """The attempt ran on an instance that was already loaded (no start, no load)."""
    return a.reason.startswith("on warm instance")
