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
runs there, with no process start and no load, if the growth of its
reservation fits. Otherwise a new instance is placed. An idle instance that
nothing pending can use is released (at once in a batch, after the
keep-alive in a service), and the first job that fits nowhere may evict idle
instances it cannot use.

Batch size ``auto`` (``Job.batch_size == 0``) picks, per job, the candidate
(1, 2, 4, 8, 16, at most one per 30 s window of the file) that maximises the
device's expected throughput: a batch-B instance weighs ``batch_gain(B)``
instances in ``S(k)``, and the memory a batch takes is weighed against the
next pending jobs it would keep out. Ties go to the smaller batch.

The first job in order that does not fit anywhere gets EASY-backfill
protection: the device where it will fit soonest (from running instances'
expected ends) holds memory for it, and later jobs may only use that device's
memory if they end before the head's expected start or fit beside it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.profiles import (
    BATCH_CANDIDATES,
    GPU_THROUGHPUT_CEILING,
    contention,
    max_batch,
    profile_for,
)
from vramscribe.core.queue import PendingQueue, order_key
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

GIB = 1024.0
# Time a fresh process needs before it starts loading (imports, CUDA init).
PROCESS_START_S = 3.0
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


@dataclass(frozen=True, slots=True)
class Release:
    """End the idle instance ``instance_id`` and give its memory back."""

    instance_id: str
    device_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Memory kept for the head of the queue on one device until ``start_at``."""

    job_id: str
    device_id: str
    needs_mb: float
    start_at: float


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


def effective_priority(job: Job, now: float, settings: Settings) -> float:
    return job.priority + max(0.0, now - job.submitted_at) / settings.aging_s_per_point


def gib(mb: float) -> str:
    return f"{mb / GIB:.1f}"


class _Dev:
    """Mutable per-call bookkeeping for one device."""

    __slots__ = (
        "busy",
        "cap",
        "capacity",
        "extra",
        "free",
        "hold",
        "idle",
        "kind",
        "loads",
        "n",
        "releases",
        "snap",
        "usable",
        "weight",
    )

    def __init__(
        self, snap: DeviceSnapshot, mine: list[InstanceView], settings: Settings, now: float
    ) -> None:
        self.snap = snap
        self.kind = snap.kind
        self.cap = snap.max_instances or settings.max_instances_per_device
        self.n = len(mine)
        self.loads = sum(1 for i in mine if i.is_loading)
        self.busy = sum(1 for i in mine if i.idle_since is None)
        self.weight = float(self.busy)
        margin = settings.safety_margin * snap.total_mb
        observed = sum(i.observed_mb for i in mine)
        foreign_now = max(0.0, snap.total_mb - snap.free_mb - observed)
        headroom = 0.0
        if snap.foreign_peak_mb is not None:
            headroom = max(0.0, snap.foreign_peak_mb - foreign_now)
        self.free = snap.free_mb - sum(i.outstanding_mb for i in mine) - margin - headroom
        # What this device could offer once our instances end and neighbours shrink
        # back to what they use now; ``capacity`` ignores neighbours (they may leave).
        self.capacity = snap.total_mb - margin
        self.usable = self.capacity - max(foreign_now, snap.foreign_peak_mb or 0.0)
        # Idle instances can be evicted at once, so their memory counts as released now.
        self.releases = sorted(
            (now if i.idle_since is not None else max(i.expected_end, now), _held(i)) for i in mine
        )
        self.idle = sorted(
            (i for i in mine if i.idle_since is not None), key=lambda i: (i.idle_since, i.iid)
        )
        self.hold: Hold | None = None
        self.extra = math.inf

    def closed_reason(self, settings: Settings, now: float) -> str | None:
        """Why no new instance can start here now, or None."""
        if now < self.snap.cooldown_until:
            return f"{self.snap.id} is cooling down after running out of memory"
        if self.n >= self.cap:
            return f"instance cap reached on {self.snap.id} ({self.n}/{self.cap})"
        if self.loads >= settings.max_loads_per_device:
            return f"a model is loading on {self.snap.id}"
        return None

    def take(self, mb: float, end: float) -> None:
        """``mb`` more of this device is spoken for until ``end``."""
        if self.hold is not None and end > self.hold.start_at:
            self.extra -= mb
        self.free -= mb
        self.releases.append((end, mb))
        self.releases.sort()


def _held(i: InstanceView) -> float:
    return max(i.reserved_mb, i.observed_mb)


def _expected_duration(job: Job, book: FootprintBook, kind: str, batch: int, warm: bool) -> float:
    """Seconds until the job's memory is back: start and load (unless warm), then transcribing."""
    audio = job.audio_s / book.speed(job.footprint_key(kind, batch))
    if warm:
        return audio
    profile = profile_for(job.model)
    return PROCESS_START_S + (profile.load_s if profile else 5.0) + audio


def _estimate(job: Job, book: FootprintBook, kind: str, batch: int | None = None) -> float:
    est = book.estimate(job.footprint_key(kind, batch), job.audio_s)
    return max(est, job.estimate_floor_mb)


def _batches(job: Job, kind: str, book: FootprintBook) -> list[int]:
    """Batch sizes worth trying: the job's own, or the auto candidates that can help."""
    if job.batch_size > 0:
        return [job.batch_size]
    top = max_batch(job.audio_s)
    return [b for b in BATCH_CANDIDATES if b <= top]


def _place(candidates: Sequence[tuple[_Dev, float, int]]) -> tuple[_Dev, float, int]:
    """Fewest running instances first (throughput), then best fit (least left over)."""
    return min(candidates, key=lambda c: (c[0].n, c[0].free - c[1], c[0].snap.id))


def _shadow(dev: _Dev, needs: float, now: float) -> float:
    """When ``needs`` MB will be free on ``dev`` as its instances end (inf: never)."""
    if needs > dev.usable:
        return math.inf
    free = dev.free
    if free >= needs:
        return now
    for end, mb in dev.releases:
        free += mb
        if free >= needs:
            return end
    return math.inf


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
        self.devs = [_Dev(d, by_device[d.id], settings, now) for d in devices]
        self.total = len(instances)
        self.used: set[str] = set()  # idle instances given a job or released in this call
        self.min_loaded = {
            kind: min(book.loaded_mb(k) for k in _smallest_keys(book, kind))
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
            return _closed_summary(self.devs, self.settings, self.now)
        return None

    def _idle_left(self) -> bool:
        return any(i.iid not in self.used for d in self.devs for i in d.idle)

    def _consider(self, job: Job) -> None:
        """A new instance for ``job``: start it, reject it, or say why it waits."""
        ests = {kind: _estimate(job, self.book, kind) for kind in self.min_loaded}
        if all(est > self.capacity[kind] for kind, est in ests.items()):
            self.result.rejects.append(Reject(job.id, _too_big(max(ests.values()), self.capacity)))
            return
        fitting: list[tuple[_Dev, float, int]] = []
        blocker: tuple[float, _Dev, float] | None = None  # (score, device, estimate)
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
            self._start_new(job, *_place(worth))
            return
        if fitting:
            dev = fitting[0][0]
            self.result.reasons[job.id] = (
                f"{dev.snap.id} is saturated: another instance would not add throughput"
            )
            return
        assert blocker is not None
        self._wait(job, blocker[1], blocker[2])

    def _adds_throughput(self, job: Job, dev: _Dev, batch: int) -> bool:
        """Would a new instance make ``dev`` faster? On a saturated device it only takes
        memory that a bigger batch could use once a running instance ends."""
        if dev.busy == 0 or dev.kind == "cpu":
            return True
        s_max = _s_max(job, dev)
        gain = self.book.batch_gain(job.footprint_key(dev.kind, batch))
        now = device_throughput(dev.busy, dev.weight, s_max)
        then = device_throughput(dev.busy + 1, dev.weight + gain, s_max)
        return then >= now * (1.0 + MIN_GAIN)

    def _start_new(self, job: Job, dev: _Dev, est: float, batch: int) -> None:
        end = self.now + _expected_duration(job, self.book, dev.kind, batch, warm=False)
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
        best: tuple[tuple[int, float, str], _Dev, InstanceView, tuple[int, float]] | None = None
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
        end = self.now + _expected_duration(job, self.book, dev.kind, batch, warm=True)
        self.result.starts.append(Start(job.id, dev.snap.id, reserved, end, inst.iid, batch))
        dev.take(grow, end)
        dev.busy += 1
        dev.weight += self.book.batch_gain(job.footprint_key(dev.kind, batch))
        self.used.add(inst.iid)
        return True

    def _batch_for(
        self, job: Job, dev: _Dev, inst: InstanceView | None
    ) -> tuple[int, float] | None:
        """The best batch size that fits on ``dev`` (on ``inst`` if warm), with its estimate."""
        best: tuple[float, int, float] | None = None
        for batch in _batches(job, dev.kind, self.book):
            est = _estimate(job, self.book, dev.kind, batch)
            need = est if inst is None else max(0.0, est - max(inst.reserved_mb, inst.observed_mb))
            if need > 0 and need > dev.free:
                continue
            if dev.hold is not None and need > dev.extra:
                warm = inst is not None
                ends = self.now + _expected_duration(job, self.book, dev.kind, batch, warm)
                if ends > dev.hold.start_at:
                    continue
            score = self._throughput(job, dev, batch, need)
            if best is None or score > best[0] + 1e-9:
                best = (score, batch, est)
        return None if best is None else (best[1], best[2])

    def _throughput(self, job: Job, dev: _Dev, batch: int, need: float) -> float:
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
            est = _estimate(other, self.book, dev.kind, 1)
            if est <= left:
                left -= est
                k += 1
                gains += 1.0
        return device_throughput(k, gains, _s_max(job, dev))

    def _next_jobs(self, job: Job) -> list[Job]:
        """The runnable jobs right after ``job`` in order (none if it is deep in the queue)."""
        try:
            pos = self.lookahead.index(job)
        except ValueError:
            return []
        later = (j for j in self.lookahead[pos + 1 :] if j.not_before <= self.now)
        return list(itertools.islice(later, self.settings.batch_lookahead))

    def _wait(self, job: Job, bdev: _Dev, est: float) -> None:
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
            _hold_for(job, self.devs, self.book, self.result, self.now)

    def _evict_for(self, job: Job) -> str | None:
        """Release the longest-idle instances on the first device where that makes room
        for ``job``, as a new instance or on the idle instance of its key that needs the
        least growth (that one is never evicted); the device's id, or None."""
        for dev in sorted(self.devs, key=lambda d: d.snap.id):
            est = _estimate(job, self.book, dev.kind)
            if est > dev.usable:
                continue
            own = [i for i in dev.idle if i.iid not in self.used and i.key == job.reuse_key]
            host = max(own, key=_held, default=None)
            # Room needed: a new instance's estimate, or only the growth of the warm host.
            need = est if host is None else est - _held(host)
            cap_ok = host is not None or dev.n < dev.cap
            victims: list[InstanceView] = []
            free, n = dev.free, dev.n
            for inst in dev.idle:
                if free >= need and (cap_ok or n < dev.cap):
                    break
                if inst.iid in self.used or inst is host:
                    continue
                victims.append(inst)
                free += _held(inst)
                n -= 1
            if victims and free >= need and (cap_ok or n < dev.cap):
                for inst in victims:
                    self.used.add(inst.iid)
                    why = f"evicted for job {job.id} ({job.model})"
                    self.result.releases.append(Release(inst.iid, dev.snap.id, why))
                return dev.snap.id
        return None

    def release_idle(self, pending_keys: set[str]) -> None:
        """End idle instances nothing pending can use, once their keep-alive has passed."""
        for dev in self.devs:
            for inst in dev.idle:
                if inst.iid in self.used or inst.key in pending_keys:
                    continue
                idle_for = self.now - (inst.idle_since or self.now)
                if idle_for < self.settings.keep_alive_s:
                    continue
                why = "nothing queued can use it"
                if self.settings.keep_alive_s > 0:
                    why = f"idle for {idle_for:.0f} s and nothing queued can use it"
                self.result.releases.append(Release(inst.iid, dev.snap.id, why))
                self.used.add(inst.iid)

    def _open_devices(self) -> list[_Dev]:
        return [
            d
            for d in self.devs
            if d.closed_reason(self.settings, self.now) is None
            and d.free >= self.min_loaded[d.kind]
        ]


def _s_max(job: Job, dev: _Dev) -> float:
    if dev.snap.s_max is not None:
        return dev.snap.s_max
    profile = profile_for(job.model)
    return profile.s_max if profile else 2.0


def device_throughput(k: int, gains: float, s_max: float) -> float:
    """Total speed of ``k`` instances whose batch gains add up to ``gains`` (solo units)."""
    if k <= 0:
        return 0.0
    return min(GPU_THROUGHPUT_CEILING, contention(k, s_max) / k * gains)


def _too_big(est: float, capacity: dict[str, float]) -> str:
    best = max(capacity.values())
    return (
        f"needs {gib(est)} GiB, more than any device can offer "
        f"({gib(max(0.0, best))} GiB usable on the largest)"
    )


def _hold_for(job: Job, devs: list[_Dev], book: FootprintBook, result: Plan, now: float) -> None:
    """Give the head job a reservation in the future on the device that frees soonest."""
    best: tuple[float, int, str, _Dev, float] | None = None
    for dev in devs:
        est = _estimate(job, book, dev.kind)
        at = _shadow(dev, est, now)
        if math.isinf(at):
            continue
        cand = (at, dev.n, dev.snap.id, dev, est)
        if best is None or cand[:3] < best[:3]:
            best = cand
    if best is None:
        return
    at, _, _, dev, est = best
    hold = Hold(job.id, dev.snap.id, est, at)
    free_then = dev.free + sum(mb for end, mb in dev.releases if end <= at)
    dev.hold = hold
    dev.extra = max(0.0, free_then - est)
    result.hold = hold


def _smallest_keys(book: FootprintBook, kind: str) -> list[tuple[str, str, int, str]]:
    keys = [k for k in book.learned if k[3] == kind]
    keys.append(("tiny", "int8", 1, kind))
    return keys


def _closed_summary(devs: list[_Dev], settings: Settings, now: float) -> str:
    parts = []
    for d in devs:
        closed = d.closed_reason(settings, now)
        parts.append(
            closed or f"{d.snap.id} has {gib(max(0.0, d.free))} GiB free after reservations"
        )
    return "waiting: " + "; ".join(parts)
