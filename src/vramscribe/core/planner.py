"""The planner: which pending jobs start now, where, at what batch size, and why the others wait.

``plan`` is pure and deterministic. It implements the admission rule:

    outstanding(i) = max(0, reserved(i) - observed(i))
    effective_free = free_measured - sum(outstanding) - margin - foreign headroom
    fits           = estimate <= effective_free and the instance/load caps allow

and every admission lowers ``effective_free`` before the next job is looked
at, so one call can never overbook a device (the seed's first defect).

Order is numeric priority plus linear aging, then submission time. Because
every waiting job ages at the same rate, the order between two jobs never
changes with time, which keeps sorting cheap.

Warm instances come first: a job whose engine key matches an idle instance
runs there, with no start and no load, if its growth fits; idle instances are
released or evicted by :mod:`vramscribe.core.idle`. Batch size ``auto``
(``Job.batch_size == 0``) picks the candidate (1-16, at most one per 30 s
window) with the best expected device throughput (``room.device_throughput``),
weighing the next pending jobs a batch keeps out; ties go to the smaller one.
On a busy GPU a new instance must add throughput, or its job waits.

The first job in order that does not fit anywhere gets EASY-backfill
protection: the device where it will fit soonest (from running instances'
expected ends) holds memory for it, and later jobs may only use that device's
memory if they end before the head's expected start or fit beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.idle import Release, evict_for, release_idle
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.queue import PendingQueue, order_key
from vramscribe.core.room import (
    GIB,
    PROCESS_START_S,
    Hold,
    Room,
    batch_candidates,
    closed_summary,
    device_throughput,
    estimate,
    expected_duration,
    gib,
    hold_for,
    place,
    s_max_for,
    smallest_keys,
    too_big,
)
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

__all__ = [
    "GIB",
    "PROCESS_START_S",
    "Hold",
    "Plan",
    "Reject",
    "Release",
    "Start",
    "device_throughput",
    "plan",
]

# A new instance on a busy GPU must add this share of throughput, or the job waits.
MIN_GAIN = 0.05
# Jobs from the front of the queue that batch-size choices look ahead over.
LOOKAHEAD_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Start:
    """Start ``job_id`` on ``device_id``; on the idle instance ``instance_id`` if set."""

    job_id: str
    device_id: str
    reserved_mb: float
    expected_end: float
    instance_id: str | None = None
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class Reject:
    job_id: str
    reason: str


@dataclass(slots=True)
class Plan:
    """The planner's decisions for one moment.

    ``reasons`` holds a reason for each job the planner looked at and did not
    start; jobs it did not need to look at share ``default_reason``.
    """

    starts: list[Start] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    default_reason: str = ""
    hold: Hold | None = None

    def reason_for(self, job_id: str) -> str:
        return self.reasons.get(job_id, self.default_reason)


def _ordered(pending: Iterable[Job], settings: Settings) -> Iterable[Job]:
    if (
        isinstance(pending, PendingQueue)
        and pending.aging_s_per_point == settings.aging_s_per_point
    ):
        return pending
    return sorted(pending, key=lambda j: order_key(j, settings.aging_s_per_point))


def _pending_keys(pending: Iterable[Job]) -> set[str]:
    if isinstance(pending, PendingQueue):
        return pending.keys()
    return {j.reuse_key for j in pending if j.state is JobState.PENDING}


def plan(
    now: float,
    pending: Iterable[Job],
    devices: Sequence[DeviceSnapshot],
    instances: Sequence[InstanceView],
    settings: Settings,
    book: FootprintBook | None = None,
) -> Plan:
    """Decide which pending jobs start now and on which device (and which idle ones end)."""
    planner = _Planner(now, devices, instances, settings, book or FootprintBook())
    if not planner.devs:
        planner.result.default_reason = "no device available"
        return planner.result
    ordered = _ordered(pending, settings)
    planner.lookahead = list(itertools.islice(ordered, LOOKAHEAD_WINDOW))
    planner.run(ordered)
    planner.release_idle(_pending_keys(pending))
    return planner.result


class _Planner:
    """One call's working state; each method is one rule of the planner."""

    def __init__(
        self,
        now: float,
        devices: Sequence[DeviceSnapshot],
        instances: Sequence[InstanceView],
        settings: Settings,
        book: FootprintBook,
    ) -> None:
        self.now, self.settings, self.book = now, settings, book
        self.result = Plan()
        by_device: dict[str, list[InstanceView]] = {d.id: [] for d in devices}
        for inst in instances:
            by_device.setdefault(inst.device_id, []).append(inst)
        self.devs = [Room(d, by_device[d.id], settings, now) for d in devices]
        self.total = len(instances)
        self.used: set[str] = set()  # idle instances given a job or released in this call
        self.min_loaded = {
            kind: min(book.loaded_mb(k) for k in smallest_keys(book, kind))
            for kind in {d.kind for d in self.devs}
        }
        self.capacity = {
            kind: max(d.capacity for d in self.devs if d.kind == kind) for kind in self.min_loaded
        }
        self.open_devs = self._open_devices()
        self.lookahead: list[Job] = []

    def run(self, ordered: Iterable[Job]) -> None:
        examined_after_head = 0
        only_warm = False
        for job in ordered:
            if job.state is not JobState.PENDING:
                continue
            if job.not_before > self.now:
                self.result.reasons[job.id] = f"retrying in {job.not_before - self.now:.0f} s"
                continue
            if only_warm or self.result.hold is not None:
                examined_after_head += 1
                if examined_after_head > self.settings.backfill_depth:
                    self._stop_reason()
                    break
            if self._start_warm(job):
                continue
            closed = self._closed()
            if closed is not None:
                if not only_warm:
                    self.result.default_reason = closed
                    # Idle instances may be what closes the devices: the head may evict them.
                    evicted = self._evict_for(job) if self._idle_left() else None
                    if evicted is not None:
                        self.result.reasons[job.id] = (
                            f"waiting for idle instances on {evicted} to release their memory"
                        )
                only_warm = True
                if not self._idle_left():
                    break
                continue
            if not only_warm:
                self._consider(job)

    def _stop_reason(self) -> None:
        hold = self.result.hold
        if hold is not None:
            self.result.default_reason = (
                f"queued behind job {hold.job_id} and {self.settings.backfill_depth} others"
            )

    def _closed(self) -> str | None:
        """Why no new instance can start anywhere now, or None."""
        if self.total >= self.settings.max_instances_total:
            return f"instance cap reached ({self.total}/{self.settings.max_instances_total})"
        if not self.open_devs:
            return closed_summary(self.devs, self.settings, self.now)
        return None

    def _idle_left(self) -> bool:
        return any(i.iid not in self.used for d in self.devs for i in d.idle)

    def _consider(self, job: Job) -> None:
        """A new instance for ``job``: start it, reject it, or say why it waits."""
        ests = {kind: estimate(job, self.book, kind) for kind in self.min_loaded}
        if all(est > self.capacity[kind] for kind, est in ests.items()):
            self.result.rejects.append(Reject(job.id, too_big(max(ests.values()), self.capacity)))
            return
        fitting: list[tuple[Room, float, int]] = []
        blocker: tuple[float, Room, float] | None = None  # (score, device, estimate)
        for dev in self.open_devs:
            choice = self._batch_for(job, dev, None)
            if choice is not None:
                fitting.append((dev, choice[1], choice[0]))
                continue
            est = ests[dev.kind]
            score = 0.0 if est <= dev.free else dev.free - est
            if blocker is None or score > blocker[0]:
                blocker = (score, dev, est)
        worth = [c for c in fitting if self._adds_throughput(job, c[0], c[2])]
        if worth:
            self._start_new(job, *place(worth))
            return
        if fitting:
            dev = fitting[0][0]
            self.result.reasons[job.id] = (
                f"{dev.snap.id} is saturated: another instance would not add throughput"
            )
            return
        assert blocker is not None
        self._wait(job, blocker[1], blocker[2])

    def _adds_throughput(self, job: Job, dev: Room, batch: int) -> bool:
        """Would a new instance make ``dev`` faster? On a saturated device it only takes
        memory that a bigger batch could use once a running instance ends."""
        if dev.busy == 0 or dev.kind == "cpu":
            return True
        s_max = s_max_for(job, dev)
        gain = self.book.batch_gain(job.footprint_key(dev.kind, batch))
        now = device_throughput(dev.busy, dev.weight, s_max)
        then = device_throughput(dev.busy + 1, dev.weight + gain, s_max)
        return then >= now * (1.0 + MIN_GAIN)

    def _start_new(self, job: Job, dev: Room, est: float, batch: int) -> None:
        end = self.now + expected_duration(job, self.book, dev.kind, batch, warm=False)
        self.result.starts.append(Start(job.id, dev.snap.id, est, end, None, batch))
        dev.take(est, end)
        dev.n += 1
        dev.loads += 1
        dev.busy += 1
        dev.weight += self.book.batch_gain(job.footprint_key(dev.kind, batch))
        self.total += 1
        self.open_devs = self._open_devices()

    def _start_warm(self, job: Job) -> bool:
        """Run ``job`` on an idle instance of its engine key, if one has room to grow into it."""
        best: tuple[tuple[int, float, str], Room, InstanceView, tuple[int, float]] | None = None
        for dev in self.devs:
            for inst in dev.idle:
                if inst.iid in self.used or inst.key != job.reuse_key:
                    continue
                choice = self._batch_for(job, dev, inst)
                if choice is None:
                    continue
                rank = (dev.n, -(inst.idle_since or 0.0), inst.iid)
                if best is None or rank < best[0]:
                    best = (rank, dev, inst, choice)
        if best is None:
            return False
        _, dev, inst, (batch, est) = best
        reserved = max(inst.reserved_mb, est)
        grow = max(0.0, reserved - inst.observed_mb) - inst.outstanding_mb
        end = self.now + expected_duration(job, self.book, dev.kind, batch, warm=True)
        self.result.starts.append(Start(job.id, dev.snap.id, reserved, end, inst.iid, batch))
        dev.take(grow, end)
        dev.busy += 1
        dev.weight += self.book.batch_gain(job.footprint_key(dev.kind, batch))
        self.used.add(inst.iid)
        return True

    def _batch_for(
        self, job: Job, dev: Room, inst: InstanceView | None
    ) -> tuple[int, float] | None:
        """The best batch size that fits on ``dev`` (on ``inst`` if warm), with its estimate."""
        best: tuple[float, int, float] | None = None
        for batch in batch_candidates(job):
            est = estimate(job, self.book, dev.kind, batch)
            need = est if inst is None else max(0.0, est - max(inst.reserved_mb, inst.observed_mb))
            if need > 0 and need > dev.free:
                continue
            if dev.hold is not None and need > dev.extra:
                warm = inst is not None
                ends = self.now + expected_duration(job, self.book, dev.kind, batch, warm)
                if ends > dev.hold.start_at:
                    continue
            score = self._throughput(job, dev, batch, need)
            if best is None or score > best[0] + 1e-9:
                best = (score, batch, est)
        return None if best is None else (best[1], best[2])

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
        gains = dev.weight + self.book.batch_gain(job.footprint_key(dev.kind, batch))
        left = dev.free - need
        for other in self._next_jobs(job):
            est = estimate(other, self.book, dev.kind, 1)
            if est <= left:
                left -= est
                k += 1
                gains += 1.0
        return device_throughput(k, gains, s_max_for(job, dev))

    def _next_jobs(self, job: Job) -> list[Job]:
        """The runnable jobs right after ``job`` in order (none if it is deep in the queue)."""
        try:
            pos = self.lookahead.index(job)
        except ValueError:
            return []
        later = (j for j in self.lookahead[pos + 1 :] if j.not_before <= self.now)
        return list(itertools.islice(later, self.settings.batch_lookahead))

    def _wait(self, job: Job, bdev: Room, est: float) -> None:
        """``job`` fits nowhere: say why, evict idle instances for it, and hold memory for it."""
        if bdev.hold is not None and est <= bdev.free:
            reason = f"held back for job {bdev.hold.job_id} (higher priority) on {bdev.snap.id}"
        else:
            reason = (
                f"waiting for memory on {bdev.snap.id} (needs {gib(est)} GiB, "
                f"{gib(max(0.0, bdev.free))} free after reservations)"
            )
        if self.result.hold is None:
            evicted = self._evict_for(job)
            if evicted:
                reason = f"waiting for idle instances on {evicted} to release their memory"
        self.result.reasons[job.id] = reason
        if self.result.hold is None:
            if not self.settings.backfill:
                self.result.default_reason = f"waiting behind job {job.id} (strict order)"
                return
            self.result.hold = hold_for(job, self.devs, self.book, self.now)

    def _evict_for(self, job: Job) -> str | None:
        releases, device = evict_for(job, self.devs, self.used, self.book)
        self.result.releases.extend(releases)
        return device

    def release_idle(self, pending_keys: set[str]) -> None:
        self.result.releases.extend(
            release_idle(self.devs, self.used, pending_keys, self.now, self.settings)
        )

    def _open_devices(self) -> list[Room]:
        return [
            d
            for d in self.devs
            if d.closed_reason(self.settings, self.now) is None
            and d.free >= self.min_loaded[d.kind]
        ]
