"""The planner: which pending jobs start now, where, and why the others wait.

``plan`` is pure and deterministic. It implements DESIGN.md's admission rule:

    outstanding(i) = max(0, reserved(i) - observed(i))
    effective_free = free_measured - sum(outstanding) - margin - foreign headroom
    fits           = estimate <= effective_free and the instance/load caps allow

and every admission lowers ``effective_free`` before the next job is looked
at, so one call can never overbook a device (the seed's first defect).

Order is numeric priority plus linear aging, then submission time. Because
every waiting job ages at the same rate, the order between two jobs never
changes with time, which keeps sorting cheap.

The first job in order that does not fit anywhere gets EASY-backfill
protection: the device where it will fit soonest (from running instances'
expected ends) holds memory for it, and later jobs may only use that device's
memory if they end before the head's expected start or fit beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.profiles import profile_for
from vramscribe.core.queue import PendingQueue, order_key
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

GIB = 1024.0
# Time a fresh process needs before it starts loading (imports, CUDA init).
PROCESS_START_S = 3.0


@dataclass(frozen=True, slots=True)
class Start:
    job_id: str
    device_id: str
    reserved_mb: float
    expected_end: float


@dataclass(frozen=True, slots=True)
class Reject:
    job_id: str
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
        "cap",
        "capacity",
        "extra",
        "free",
        "hold",
        "kind",
        "loads",
        "n",
        "releases",
        "snap",
        "usable",
    )

    def __init__(
        self, snap: DeviceSnapshot, mine: list[InstanceView], settings: Settings, now: float
    ) -> None:
        self.snap = snap
        self.kind = snap.kind
        self.cap = snap.max_instances or settings.max_instances_per_device
        self.n = len(mine)
        self.loads = sum(1 for i in mine if i.state is JobState.LOADING)
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
        self.releases = sorted(
            (max(i.expected_end, now), max(i.reserved_mb, i.observed_mb)) for i in mine
        )
        self.hold: Hold | None = None
        self.extra = math.inf

    def closed_reason(self, settings: Settings, now: float) -> str | None:
        """Why nothing at all can start here now, or None."""
        if now < self.snap.cooldown_until:
            return f"{self.snap.id} is cooling down after running out of memory"
        if self.n >= self.cap:
            return f"instance cap reached on {self.snap.id} ({self.n}/{self.cap})"
        if self.loads >= settings.max_loads_per_device:
            return f"a model is loading on {self.snap.id}"
        return None


def _expected_duration(job: Job, book: FootprintBook, kind: str) -> float:
    profile = profile_for(job.model)
    load_s = profile.load_s if profile else 5.0
    return PROCESS_START_S + load_s + job.audio_s / book.speed(job.footprint_key(kind))


def _estimate(job: Job, book: FootprintBook, kind: str) -> float:
    return max(book.estimate(job.footprint_key(kind), job.audio_s), job.estimate_floor_mb)


def _place(candidates: Sequence[tuple[_Dev, float]]) -> tuple[_Dev, float]:
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


def plan(
    now: float,
    pending: Iterable[Job],
    devices: Sequence[DeviceSnapshot],
    instances: Sequence[InstanceView],
    settings: Settings,
    book: FootprintBook | None = None,
) -> Plan:
    """Decide which pending jobs start now and on which device."""
    book = book if book is not None else FootprintBook()
    result = Plan()
    by_device: dict[str, list[InstanceView]] = {d.id: [] for d in devices}
    for inst in instances:
        by_device.setdefault(inst.device_id, []).append(inst)
    devs = [_Dev(d, by_device[d.id], settings, now) for d in devices]
    total = len(instances)
    if not devs:
        result.default_reason = "no device available"
        return result

    ordered: Iterable[Job]
    if (
        isinstance(pending, PendingQueue)
        and pending.aging_s_per_point == settings.aging_s_per_point
    ):
        ordered = pending
    else:
        aging = settings.aging_s_per_point
        ordered = sorted(pending, key=lambda j: order_key(j, aging))

    min_loaded = {
        kind: min(book.loaded_mb(k) for k in _smallest_keys(book, kind))
        for kind in {d.kind for d in devs}
    }
    capacity = {kind: max(d.capacity for d in devs if d.kind == kind) for kind in min_loaded}
    open_devs = _open_devices(devs, settings, now, min_loaded)
    examined_after_head = 0
    for job in ordered:
        if job.state is not JobState.PENDING:
            continue
        if job.not_before > now:
            result.reasons[job.id] = f"retrying in {job.not_before - now:.0f} s"
            continue
        if total >= settings.max_instances_total:
            result.default_reason = f"instance cap reached ({total}/{settings.max_instances_total})"
            break
        if not open_devs:
            result.default_reason = _closed_summary(devs, settings, now)
            break
        if result.hold is not None:
            examined_after_head += 1
            if examined_after_head > settings.backfill_depth:
                result.default_reason = (
                    f"queued behind job {result.hold.job_id} and {settings.backfill_depth} others"
                )
                break
        ests = {kind: _estimate(job, book, kind) for kind in min_loaded}
        if all(est > capacity[kind] for kind, est in ests.items()):
            result.rejects.append(Reject(job.id, _too_big(max(ests.values()), capacity)))
            continue
        fitting: list[tuple[_Dev, float]] = []
        blocker: tuple[float, _Dev, float] | None = None  # (score, device, estimate)
        for dev in open_devs:
            est = ests[dev.kind]
            if est > dev.free:
                if blocker is None or dev.free - est > blocker[0]:
                    blocker = (dev.free - est, dev, est)
                continue
            if dev.hold is not None and est > dev.extra:
                ends = now + _expected_duration(job, book, dev.kind)
                if ends > dev.hold.start_at:
                    if blocker is None or blocker[0] < 0:
                        blocker = (0.0, dev, est)
                    continue
            fitting.append((dev, est))
        if fitting:
            dev, est = _place(fitting)
            end = now + _expected_duration(job, book, dev.kind)
            result.starts.append(Start(job.id, dev.snap.id, est, end))
            if dev.hold is not None and end > dev.hold.start_at:
                dev.extra -= est
            dev.free -= est
            dev.n += 1
            dev.loads += 1
            total += 1
            dev.releases.append((end, est))
            dev.releases.sort()
            open_devs = _open_devices(devs, settings, now, min_loaded)
            continue
        assert blocker is not None
        _, bdev, est = blocker
        if bdev.hold is not None and est <= bdev.free:
            reason = f"held back for job {bdev.hold.job_id} (higher priority) on {bdev.snap.id}"
        else:
            reason = (
                f"waiting for memory on {bdev.snap.id} (needs {gib(est)} GiB, "
                f"{gib(max(0.0, bdev.free))} free after reservations)"
            )
        result.reasons[job.id] = reason
        if result.hold is None:
            if not settings.backfill:
                result.default_reason = f"waiting behind job {job.id} (strict order)"
                break
            _hold_for(job, devs, book, result, now)
    return result


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


def _open_devices(
    devs: list[_Dev], settings: Settings, now: float, min_loaded: dict[str, float]
) -> list[_Dev]:
    return [
        d for d in devs if d.closed_reason(settings, now) is None and d.free >= min_loaded[d.kind]
    ]


def _closed_summary(devs: list[_Dev], settings: Settings, now: float) -> str:
    parts = []
    for d in devs:
        closed = d.closed_reason(settings, now)
        parts.append(
            closed or f"{d.snap.id} has {gib(max(0.0, d.free))} GiB free after reservations"
        )
    return "waiting: " + "; ".join(parts)
