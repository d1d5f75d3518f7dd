"""Pending reasons by kind: the words the planner gives a waiting job, without ids and numbers.

A reason names the job it waits behind and the gigabytes it needs, so its
words change from one plan to the next while the kind of wait stays the same.
The report groups waits by kind, and the runner tells listeners of a new reason
at once only when its kind changes (see ``Runner._apply``).
"""

from __future__ import annotations

import functools
import re

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
    (
        re.compile(r"^held back for job \S+ \(higher priority\)$"),
        "held back for a higher-priority job",
    ),
    (re.compile(r"^retrying in .*$"), "retrying"),
    (re.compile(r"^instance cap reached \(\d+/\d+\)$"), "instance cap reached"),
    (re.compile(r"^instance cap reached on (\S+) \(\d+/\d+\)$"), r"instance cap reached on \1"),
    (re.compile(r"^queued behind job \S+ and \d+ others$"), "queued behind other jobs"),
    (
        re.compile(r"^waiting behind job \S+ \(strict order\)$"),
        "waiting behind another job (strict order)",
    ),
    (re.compile(r"^(\S+) is saturated: job \S+ starts there first$"), r"\1 is saturated"),
]
_NUMBERS_IN_PARENS = re.compile(r"\s*\([^)]*\d[^)]*\)")
_BARE_NUMBER = re.compile(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])")


@functools.lru_cache(maxsize=4096)
def normalise_reason(reason: str) -> str:
    """One label per kind of wait: numbers and job ids out, device ids kept.

    A summary of several closed devices (``waiting: a; b``) keeps one label per
    device, in order. Kept for the reasons seen last: every queued job is checked
    at every plan, and most of them share a few reasons.
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
