"""A bounded wait for memory that other processes hold.

A job that fits on an empty device but not beside what other processes hold
(now, or at their recent peak) may wait for them to let go, but not forever:
once it has been blocked by them for ``Settings.max_wait_for_memory_s`` in a
row it fails, with a reason that says what blocks it and what would help. A
job that waits for our own running jobs is not blocked by others: its memory
comes back when they end, so its timer does not run (and starts again from
zero the next time others block it). A job that fits on no empty device is
rejected by the planner at once and never waits here.

Pure: the caller passes the time, the planner's decisions, and what is still
queued; the runner and the simulator apply the failures it returns.
"""

from __future__ import annotations

import math
from collections.abc import Container

from vramscribe.core.decisions import Blocked, Plan, Reject

__all__ = ["Blocked", "MemoryWaits"]


class MemoryWaits:
    """When each queued job began its current stretch blocked by others' memory."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.since: dict[str, float] = {}
        self.blocked: dict[str, Blocked] = {}

    def update(self, now: float, decisions: Plan, queued: Container[str]) -> list[Reject]:
        """Start, stop and check timers from one plan; the jobs whose wait is over."""
        for job_id in list(self.since):
            looked_at = job_id in decisions.reasons
            if job_id not in queued or (looked_at and job_id not in decisions.blocked):
                del self.since[job_id]
                self.blocked.pop(job_id, None)
        out = []
        for job_id, why in decisions.blocked.items():
            start = self.since.setdefault(job_id, now)
            self.blocked[job_id] = why
            if now - start >= self.limit_s:
                out.append(Reject(job_id, why.give_up(now - start)))
                del self.since[job_id]
                del self.blocked[job_id]
        return out

    def left_s(self, job_id: str, now: float) -> float | None:
        """Seconds until ``job_id`` gives up (None: not blocked by others)."""
        start = self.since.get(job_id)
        return None if start is None else max(0.0, self.limit_s - (now - start))

    def annotate(self, job_id: str, reason: str, now: float) -> str:
        """``reason`` with the time left, in whole minutes (the live view counts down)."""
        left = self.left_s(job_id, now)
        if left is None or math.isinf(self.limit_s):
            return reason
        if left >= 60:
            return f"{reason} (gives up in {math.ceil(left / 60)} min)"
        return f"{reason} (gives up in under a minute)"
