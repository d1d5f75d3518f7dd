"""The pending queue, kept in planner order as jobs come and go.

With linear aging the order of two waiting jobs never changes over time
(both age at the same rate), so the queue can be sorted once on insert and
the planner can walk it from the front and stop as soon as no device can take
anything more: a plan call costs what it examines, not the queue's length.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.profiles import profile_for

OrderKey = tuple[float, float, float, float, str]


def order_key(job: Job, aging_s_per_point: float) -> OrderKey:
    """Effective priority descending, then submission time, then biggest model first.

    Among jobs submitted together (a batch), bigger models go first: first-fit
    decreasing packs memory better, and small jobs backfill around the big
    ones instead of big ones being left for the end, where they would wait
    for the whole device to drain (the starvation the seed design suffers).
    Ordering by audio length instead would fill the device with the longest
    files first and make early high-priority arrivals wait for them; as the
    last tie-break (same priority, same submission, same model size) it is the
    longest-first rule that keeps instances from finishing a batch one long
    file apart.
    """
    profile = profile_for(job.model)
    size = profile.fp16_mb if profile else 0.0
    return (
        job.submitted_at / aging_s_per_point - job.priority,
        job.submitted_at,
        -size,
        -job.audio_s,
        job.id,
    )


class PendingQueue:
    """Jobs waiting to start, in the order the planner considers them."""

    def __init__(self, aging_s_per_point: float) -> None:
        self.aging_s_per_point = aging_s_per_point
        self._keys: list[OrderKey] = []
        self._jobs: list[Job] = []
        self._key_of: dict[str, OrderKey] = {}
        self._reuse_keys: Counter[str] = Counter()

    def push(self, job: Job) -> None:
        if job.id in self._key_of:
            raise ValueError(f"job {job.id} is already queued")
        key = order_key(job, self.aging_s_per_point)
        idx = bisect.bisect_left(self._keys, key)
        self._keys.insert(idx, key)
        self._jobs.insert(idx, job)
        self._key_of[job.id] = key
        self._reuse_keys[job.reuse_key] += 1

    def remove(self, job_id: str) -> Job:
        key = self._key_of.pop(job_id)
        idx = bisect.bisect_left(self._keys, key)
        del self._keys[idx]
        job = self._jobs.pop(idx)
        self._reuse_keys[job.reuse_key] -= 1
        if not self._reuse_keys[job.reuse_key]:
            del self._reuse_keys[job.reuse_key]
        return job

    def keys(self) -> set[str]:
        """The engine keys of the queued jobs: what an idle instance could still serve."""
        return set(self._reuse_keys)

    def get(self, job_id: str) -> Job | None:
        key = self._key_of.get(job_id)
        if key is None:
            return None
        return self._jobs[bisect.bisect_left(self._keys, key)]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._key_of

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)


def in_order(pending: Iterable[Job], aging_s_per_point: float) -> Iterable[Job]:
    """``pending`` in planner order: a queue kept in that order as is, anything else sorted."""
    if isinstance(pending, PendingQueue) and pending.aging_s_per_point == aging_s_per_point:
        return pending
    return sorted(pending, key=lambda j: order_key(j, aging_s_per_point))


def queued_keys(pending: Iterable[Job]) -> set[str]:
    """The engine keys of the pending jobs (what an idle instance could still serve)."""
    if isinstance(pending, PendingQueue):
        return pending.keys()
    return {j.reuse_key for j in pending if j.state is JobState.PENDING}
