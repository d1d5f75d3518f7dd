"""Pending reasons, normalised into one label per kind of wait, and the stretches they cover."""

from __future__ import annotations

import bisect
import re

from vramscribe.report.load import Attempt, Job

MEMORY_WAIT = "waiting for memory on"
UNPLANNED = "not yet planned"
"""A job's first moments in the queue, before the planner gave it a reason (not a reason)."""

_REASON_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^waiting for memory on (\S+?)(?: \(.*\))?$"), r"waiting for memory on \1"),
    (re.compile(r"^(\S+) has [\d.]+ GiB free after reservations$"), r"waiting for memory on \1"),
    (
        re.compile(r"^blocked by other processes' memory on (\S+?)(?: \(.*)?$"),
        r"blocked by other processes' memory on \1",
    ),
    (
        re.compile(r"^held back for job \S+ \(higher priority\) on (\S+)$"),
        r"held back for a higher-priority job on \1",
    ),
    (re.compile(r"^retrying in .*$"), "retrying"),
    (re.compile(r"^instance cap reached \(\d+/\d+\)$"), "instance cap reached"),
    (re.compile(r"^instance cap reached on (\S+) \(\d+/\d+\)$"), r"instance cap reached on \1"),
    (re.compile(r"^queued behind job \S+ and \d+ others$"), "queued behind other jobs"),
    (
        re.compile(r"^waiting behind job \S+ \(strict order\)$"),
        "waiting behind another job (strict order)",
    ),
]
_NUMBERS_IN_PARENS = re.compile(r"\s*\([^)]*\d[^)]*\)")
_BARE_NUMBER = re.compile(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])")


def normalise_reason(reason: str) -> str:
    """One label per kind of wait: numbers and job ids out, device ids kept.

    A summary of several closed devices (``waiting: a; b``) keeps one label per
    device, in order.
    """
    text = reason.strip()
    if not text:
        return UNPLANNED
    text = text.removeprefix("waiting: ")
    parts: list[str] = []
    for raw in text.split("; "):
        part = raw.strip()
        for pattern, label in _REASON_RULES:
            if pattern.match(part):
                part = pattern.sub(label, part)
                break
        else:
            part = _BARE_NUMBER.sub("N", _NUMBERS_IN_PARENS.sub("", part))
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def memory_wait_devices(label: str) -> list[str]:
    return re.findall(MEMORY_WAIT + r" (\S+?)(?:;|$)", label)


def reason_segments(job: Job) -> list[tuple[float, float, str]]:
    """(start, end, normalised reason) for every stretch the job was pending.

    The runner only records a reason when it changes, so a stretch begins with
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
