"""Batch size ``auto``: which batch size a job gets on a device, and whether it should
run there now at all.

The choice maximises the device's expected throughput
(:func:`~vramscribe.core.room.device_throughput`), weighing the next pending
jobs the batch's memory keeps out; ties (at the device's ceiling, every batch
ties) go to the batch worth more once the others end, then to the smaller. On a busy GPU
a job (on a new instance or a warm one) must not lower the throughput
(``MIN_GAIN``), and must add ``CRAMPED_GAIN`` of it if memory only allows it a
smaller batch than its file could use, or it waits.
"""

from __future__ import annotations

import itertools

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job
from vramscribe.core.profiles import max_batch
from vramscribe.core.room import (
    Room,
    batch_candidates,
    device_throughput,
    estimate,
    expected_duration,
    s_max_for,
    startup_s,
    uncapped_throughput,
)
from vramscribe.core.snapshot import InstanceView

# What decides whether a job can start, besides its audio length (see ``alike_key``).
AlikeKey = tuple[str, str, str, int, float, int]
# A job on a busy GPU (warm or new) must not lower its throughput, or it waits: a tie
# loses nothing and leaves an instance ready for when another ends.
MIN_GAIN = 0.0
# ... and must add this share if memory is too short now for the batch size its file
# allows: started cramped, it keeps that batch size to its end, in memory a full batch
# could have used once a running instance ends (on a T4, where concurrency adds little,
# starting cramped made vramscribe 0.71x batched-1; waiting for room is what batched-1
# does). 1.0 cost 1-2% beside it on a 24 GiB GPU (single-24g-batch); 0.5 did not.
CRAMPED_GAIN = 0.5
# Jobs from the front of the queue that batch-size choices look ahead over.
LOOKAHEAD_WINDOW = 64


class Batches:
    """Batch choices for one planner call (the queue's front is looked ahead over)."""

    def __init__(self, book: FootprintBook, now: float, batch_lookahead: int) -> None:
        self.book, self.now, self.batch_lookahead = book, now, batch_lookahead
        self.lookahead: list[Job] = []
        self._pos: dict[int, int] = {}
        # Within one call estimates and followers do not change: computed once per job.
        self._ests: dict[tuple[int, str, int], float] = {}
        self._next: dict[tuple[int, str], list[float]] = {}
        self._gains: dict[tuple[str, str, int, str], float] = {}

    def set_lookahead(self, jobs: list[Job]) -> None:
        self.lookahead = jobs
        self._pos = {id(j): k for k, j in enumerate(jobs)}

    def is_ahead(self, job: Job) -> bool:
        """Whether ``job`` is in the window whose choices weigh the jobs behind it."""
        return id(job) in self._pos

    def choose(self, job: Job, dev: Room, inst: InstanceView | None) -> tuple[int, float] | None:
        """The best batch size that fits on ``dev`` (on ``inst`` if warm), with its estimate."""
        best: tuple[float, float, int, float] | None = None
        for batch in batch_candidates(job):
            est = self.estimate(job, dev.kind, batch)
            need = est if inst is None else max(0.0, est - max(inst.reserved_mb, inst.observed_mb))
            if need > 0 and need > dev.free:
                continue
            if dev.hold is not None and need > dev.extra:
                if dev.hold.strict:
                    continue
                warm = inst is not None
                ends = self.now + expected_duration(job, self.book, dev.kind, batch, warm)
                if ends > dev.hold.start_at:
                    continue
            score = self._throughput(job, dev, batch, need)
            # At the device's ceiling every batch ties: the one that gives more once
            # the others end wins (ties left go to the smaller batch).
            after = self._uncapped(job, dev, batch)
            if (
                best is None
                or score > best[0] + 1e-9
                or (score > best[0] - 1e-9 and after > best[1] + 1e-9)
            ):
                best = (score, after, batch, est)
        return None if best is None else (best[2], best[3])

    def _uncapped(self, job: Job, dev: Room, batch: int) -> float:
        """The device's throughput with ``job`` at ``batch``, were it not capped."""
        gains = dev.weight + self.gain(job, dev.kind, batch)
        return uncapped_throughput(dev.busy + 1, gains, s_max_for(job, dev))

    def adds_throughput(self, job: Job, dev: Room, batch: int, warm: bool) -> bool:
        """Would ``job`` at ``batch`` make ``dev`` faster? On a saturated device it only
        takes memory that a bigger batch could use once a running instance ends.

        Weighed against the instances still running when it begins to transcribe (after
        its start and load, unless warm): one loaded while another finishes only hides
        that load. A cramped batch is weighed against all of them: it keeps its size to
        its file's end, so waiting for the room is what a full batch needs."""
        if dev.busy == 0 or dev.kind == "cpu":
            return True
        cramped = job.batch_size == 0 and batch < max_batch(job.audio_s)
        k, weight = dev.busy, dev.weight
        if not (warm or cramped):
            # Those expected to end before it transcribes; one past its expected end may
            # run on for long, so it stays.
            begins = self.now + startup_s(job)
            ending = [gain for end, gain in dev.running if self.now < end <= begins]
            k, weight = k - len(ending), weight - sum(ending)
            if k == 0:
                return True
        s_max = s_max_for(job, dev)
        gain = self.gain(job, dev.kind, batch)
        now = device_throughput(k, weight, s_max)
        then = device_throughput(k + 1, weight + gain, s_max)
        return then >= now * (1.0 + (CRAMPED_GAIN if cramped else MIN_GAIN))

    def _throughput(self, job: Job, dev: Room, batch: int, need: float) -> float:
        """Expected device throughput (solo units) if ``job`` takes ``need`` MB at ``batch``.

        The memory left over goes, in order, to the next pending jobs at batch 1
        (a new instance each): a big batch is worth it only if it beats the
        instances it keeps out. Instances share the device as
        :func:`~vramscribe.core.profiles.shared_speeds` says.
        """
        if job.batch_size > 0:
            return 0.0
        k = dev.busy + 1
        gains = dev.weight + self.gain(job, dev.kind, batch)
        left = dev.free - need
        for est in self._next_estimates(job, dev.kind):
            if est <= left:
                left -= est
                k += 1
                gains += 1.0
        return device_throughput(k, gains, s_max_for(job, dev))

    def gain(self, job: Job, kind: str, batch: int) -> float:
        """The book's batch gain for ``job`` at ``batch`` on a ``kind`` device."""
        key = job.footprint_key(kind, batch)
        found = self._gains.get(key)
        if found is None:
            found = self._gains[key] = self.book.batch_gain(key)
        return found

    def estimate(self, job: Job, kind: str, batch: int) -> float:
        key = (id(job), kind, batch)
        est = self._ests.get(key)
        if est is None:
            est = self._ests[key] = estimate(job, self.book, kind, batch)
        return est

    def _next_estimates(self, job: Job, kind: str) -> list[float]:
        """Batch-1 estimates of the runnable jobs right after ``job`` in order (none if it
        is deep in the queue)."""
        found = self._next.get((id(job), kind))
        if found is not None:
            return found
        pos = self._pos.get(id(job))
        if pos is None:
            return []
        later = (j for j in self.lookahead[pos + 1 :] if j.not_before <= self.now)
        found = [self.estimate(j, kind, 1) for j in itertools.islice(later, self.batch_lookahead)]
        self._next[(id(job), kind)] = found
        return found


def alike_key(job: Job) -> AlikeKey:
    """Jobs with one key and audio at least as long cannot start where a shorter one could
    not: estimates, end times and batch candidates' needs only grow with the audio, and the
    candidates themselves are part of the key."""
    batches = max_batch(job.audio_s) if job.batch_size == 0 else job.batch_size
    return (
        job.model,
        job.compute_type,
        job.reuse_key,
        job.batch_size,
        job.estimate_floor_mb,
        batches,
    )
