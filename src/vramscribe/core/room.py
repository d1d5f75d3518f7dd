"""One device as one planner call sees it: room, estimates, expected ends and holds.

The planner (:mod:`vramscribe.core.planner`) walks the queue; this module holds
the per-device arithmetic it relies on, so each rule reads as one function:
what a job is expected to need and how long it runs, where it fits soonest,
what memory is held for the head of the queue, and how fast a device runs
with a given mix of instances and batch sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job
from vramscribe.core.profiles import (
    BATCH_CANDIDATES,
    GPU_THROUGHPUT_CEILING,
    batch_gain,
    contention,
    max_batch,
    profile_for,
)
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

GIB = 1024.0
MIB = 1024 * 1024
# Time a fresh process needs before it starts loading (imports, CUDA init).
PROCESS_START_S = 3.0
# A head of the queue that has waited this long gets a strict hold (see ``Hold.strict``).
STRICT_HOLD_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class Hold:
    """Memory kept for the head of the queue on one device until ``start_at``."""

    job_id: str
    device_id: str
    needs_mb: float
    start_at: float
    strict: bool = False
    """The head has waited ``STRICT_HOLD_AFTER_S``: no job may start in its memory on the
    promise of ending first (expected ends run late under contention, and each late one
    pushes the head back: the large jobs left to the end)."""


def gib(mb: float) -> str:
    return f"{mb / GIB:.1f}"


def best_by_kind(devs: Iterable[Room], value: Callable[[Room], float]) -> dict[str, Room]:
    """Per device kind, the device where ``value`` is largest (the first of equals)."""
    best: dict[str, Room] = {}
    for dev in devs:
        if dev.kind not in best or value(dev) > value(best[dev.kind]):
            best[dev.kind] = dev
    return best


class Room:
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
        "others",
        "releases",
        "running",
        "saturated_for",
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
        # Instances with a job: when each expects to end, and its batch's gain (its weight
        # in the device's throughput).
        self.running: list[tuple[float, float]] = []
        self.busy, self.weight = 0, 0.0
        for i in mine:
            if i.idle_since is None:
                self.run(i.expected_end, batch_gain(i.batch_size, snap.kind))
        margin = settings.safety_margin * snap.total_mb
        observed = sum(i.observed_mb for i in mine)
        foreign_now = max(0.0, snap.total_mb - snap.free_mb - observed)
        headroom = 0.0
        if snap.foreign_peak_mb is not None:
            headroom = max(0.0, snap.foreign_peak_mb - foreign_now)
        # The user's reserve is room for neighbours to grow into, like the headroom their
        # recent peak asks for: the larger of the two is kept free, not both.
        room_for_others = max(headroom, snap.reserve_mb)
        self.free = snap.free_mb - sum(i.outstanding_mb for i in mine) - margin - room_for_others
        # What this device could offer once our instances end and neighbours shrink
        # back to what they use now; ``capacity`` ignores neighbours (they may leave)
        # but not the reserve the user leaves them.
        self.capacity = snap.total_mb - margin - snap.reserve_mb
        # What other processes hold: now, or their recent peak if higher.
        self.others = max(foreign_now, snap.foreign_peak_mb or 0.0)
        self.usable = snap.total_mb - margin - max(self.others, foreign_now + snap.reserve_mb)
        if snap.memory_limit_bytes is not None:
            # A user's limit caps what we hold here, reserved or observed (limits.py).
            limit = snap.memory_limit_bytes / MIB
            self.free = min(self.free, limit - sum(held(i) for i in mine))
            self.capacity = min(self.capacity, limit)
            self.usable = min(self.usable, limit)
        # Idle instances can be evicted at once, so their memory counts as released now.
        self.releases = sorted(
            (now if i.idle_since is not None else max(i.expected_end, now), held(i)) for i in mine
        )
        self.idle = sorted(
            (i for i in mine if i.idle_since is not None), key=lambda i: (i.idle_since, i.iid)
        )
        self.hold: Hold | None = None
        self.extra = math.inf
        # The job an earlier look found this device too busy for: no later job may
        # start a new instance here in this call (it would overtake it every time).
        self.saturated_for: str | None = None

    def closed_reason(self, settings: Settings, now: float) -> str | None:
        """Why no new instance can start here now, or None."""
        if not self.snap.fresh:
            return f"waiting for a reading of {self.snap.id} newer than its reading lag"
        if now < self.snap.cooldown_until:
            return f"{self.snap.id} is cooling down after running out of memory"
        if self.n >= self.cap:
            return f"instance cap reached on {self.snap.id} ({self.n}/{self.cap})"
        if self.loads >= settings.max_loads_per_device:
            return f"a model is loading on {self.snap.id}"
        if self.saturated_for is not None:
            return f"{self.snap.id} is saturated: job {self.saturated_for} starts there first"
        return None

    def run(self, end: float, gain: float) -> None:
        """An instance runs a job here until ``end``, weighing its batch's ``gain``."""
        self.running.append((end, gain))
        self.busy += 1
        self.weight += gain

    def take(self, mb: float, end: float) -> None:
        """``mb`` more of this device is spoken for until ``end``."""
        if self.hold is not None and end > self.hold.start_at:
            self.extra -= mb
        self.free -= mb
        self.releases.append((end, mb))
        self.releases.sort()


def held(i: InstanceView) -> float:
    return max(i.reserved_mb, i.observed_mb)


def expected_duration(job: Job, book: FootprintBook, kind: str, batch: int, warm: bool) -> float:
    """Seconds until the job's memory is back: start and load (unless warm), then transcribing."""
    audio = job.audio_s / book.speed(job.footprint_key(kind, batch))
    return audio if warm else startup_s(job) + audio


def startup_s(job: Job) -> float:
    """Seconds before a new instance for ``job`` transcribes: process start and load."""
    profile = profile_for(job.model)
    return PROCESS_START_S + (profile.load_s if profile else 5.0)


def estimate(job: Job, book: FootprintBook, kind: str, batch: int | None = None) -> float:
    est = book.estimate(job.footprint_key(kind, batch), job.audio_s) + job.decode_extra_mb
    return max(est, job.estimate_floor_mb)


def batch_candidates(job: Job) -> list[int]:
    """Batch sizes worth trying: the job's own, or the auto candidates that can help."""
    if job.batch_size > 0:
        return [job.batch_size]
    top = max_batch(job.audio_s)
    return [b for b in BATCH_CANDIDATES if b <= top]


def place(candidates: Sequence[tuple[Room, float, int]]) -> tuple[Room, float, int]:
    """Fewest running instances first (throughput), then best fit (least left over)."""
    return min(candidates, key=lambda c: (c[0].n, c[0].free - c[1], c[0].snap.id))


def shadow(dev: Room, needs: float, now: float) -> float:
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


def s_max_for(job: Job, dev: Room) -> float:
    if dev.snap.s_max is not None:
        return dev.snap.s_max
    profile = profile_for(job.model)
    return profile.s_max if profile else 2.0


def device_throughput(k: int, gains: float, s_max: float) -> float:
    """Total speed of ``k`` instances whose batch gains add up to ``gains`` (solo units)."""
    return min(GPU_THROUGHPUT_CEILING, uncapped_throughput(k, gains, s_max))


def uncapped_throughput(k: int, gains: float, s_max: float) -> float:
    """:func:`device_throughput` were the device not capped at the batch-16 gain."""
    return contention(k, s_max) / k * gains if k > 0 else 0.0


def too_big(est: float, capacity: dict[str, float]) -> str:
    best = max(capacity.values())
    return (
        f"needs {gib(est)} GiB, more than any device can offer "
        f"({gib(max(0.0, best))} GiB usable on the largest)"
    )


def hold_for(job: Job, devs: list[Room], book: FootprintBook, now: float) -> Hold | None:
    """Give the head job a reservation in the future on the device that frees soonest."""
    best: tuple[float, int, str, Room, float] | None = None
    for dev in devs:
        est = estimate(job, book, dev.kind)
        at = shadow(dev, est, now)
        if math.isinf(at):
            continue
        cand = (at, dev.n, dev.snap.id, dev, est)
        if best is None or cand[:3] < best[:3]:
            best = cand
    if best is None:
        return None
    at, _, _, dev, est = best
    strict = now - job.submitted_at >= STRICT_HOLD_AFTER_S
    hold = Hold(job.id, dev.snap.id, est, at, strict)
    free_then = dev.free + sum(mb for end, mb in dev.releases if end <= at)
    dev.hold = hold
    dev.extra = max(0.0, free_then - est)
    return hold


def smallest_keys(book: FootprintBook, kind: str) -> list[tuple[str, str, int, str]]:
    keys = [k for k in book.learned if k[3] == kind]
    keys.append(("tiny", "int8", 1, kind))
    return keys


def closed_summary(devs: list[Room], settings: Settings, now: float) -> str:
    parts = []
    for d in devs:
        closed = d.closed_reason(settings, now)
        parts.append(
            closed or f"{d.snap.id} has {gib(max(0.0, d.free))} GiB free after reservations"
        )
    return "waiting: " + "; ".join(parts)
