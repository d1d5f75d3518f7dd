"""The planner: which pending jobs start now, where, at what batch size, and why the others wait.

``plan`` is pure and deterministic. It implements the admission rule:

    outstanding(i) = max(0, reserved(i) - observed(i))
    effective_free = free_measured - sum(outstanding) - margin - foreign headroom
    fits           = estimate <= effective_free and the instance/load caps allow

and every admission lowers ``effective_free`` before the next job is looked
at, so one call can never overbook a device (the seed's first defect).

Order is numeric priority plus linear aging, then submission time (so two jobs
never swap places); a job left waiting holds back every lower-priority one.

Warm instances come first: a job whose engine key matches an idle instance
runs there, with no start and no load, if its growth fits; idle instances are
released or evicted by :mod:`vramscribe.core.idle`. Batch sizes (``auto``)
come from :mod:`vramscribe.core.batching`. A job that fits on no device beside
what other processes hold is marked blocked (:mod:`vramscribe.core.wait`).

The first job in order that does not fit anywhere gets EASY-backfill
protection: the device where it will fit soonest (from running instances'
expected ends) holds memory for it, and later jobs may only use that device's
memory if they end before the head's expected start or fit beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from vramscribe.core.batching import LOOKAHEAD_WINDOW, AlikeKey, Batches, alike_key
from vramscribe.core.decisions import Blocked, Plan, Reject, Start
from vramscribe.core.footprints import FootprintBook
from vramscribe.core.idle import (
    Release,
    evict_for,
    reclaim_for,
    release_idle,
    releasing,
)
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.queue import in_order, queued_keys
from vramscribe.core.room import (
    Hold,
    Room,
    best_by_kind,
    closed_summary,
    device_throughput,
    estimate,
    expected_duration,
    gib,
    hold_for,
    place,
    smallest_keys,
    too_big,
)
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

__all__ = ["Blocked", "Hold", "Plan", "Reject", "Release", "Start", "device_throughput", "plan"]


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
    ordered = in_order(pending, settings.aging_s_per_point)
    planner.pending_keys = queued_keys(pending)
    planner.batches.set_lookahead(list(itertools.islice(ordered, LOOKAHEAD_WINDOW)))
    planner.run(ordered)
    planner.release_idle()
    return planner.result


class _Planner:
    """One call's working state; each method is one rule of the planner.

    Cost is bounded: once one job has not started, at most ``backfill_depth`` further
    jobs are looked at, whatever the path. Each look is cheap: a job whose smallest
    estimate exceeds every open device's free memory waits at once, and a job like one
    that just could not start (same model, settings and batch candidates, audio at
    least as long, no decision since) shares its reason."""

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
        self.idle_by_key: dict[str, list[tuple[Room, InstanceView]]] = {}
        for dev in self.devs:
            for inst in dev.idle:
                self.idle_by_key.setdefault(inst.key, []).append((dev, inst))
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
        # Where each device kind offers the most beside other processes; whether any do hold some.
        self.most_usable = best_by_kind(self.devs, lambda d: d.usable)
        self.others_hold = any(d.others > 0 for d in self.devs)
        self.batches = Batches(book, now, settings.batch_lookahead)
        self.pending_keys: set[str] = set()
        self.first_waiting: str | None = None
        self.barrier: Job | None = None  # the highest-priority job left waiting
        self.counting = False
        # Bumped by every decision that changes a device's room (start, eviction, hold).
        self.generation = 0
        self.memo: dict[AlikeKey, tuple[int, float, str]] = {}
        self._most_free: tuple[int, dict[str, Room]] = (-1, {})

    def run(self, ordered: Iterable[Job]) -> None:
        examined = 0
        only_warm = False
        for job in ordered:
            if self.counting:
                examined += 1
                if examined > self.settings.backfill_depth:
                    self._stop_reason()
                    break
            if job.state is not JobState.PENDING:
                continue
            if job.not_before > self.now:
                self._waits(job, f"retrying in {job.not_before - self.now:.0f} s")
                continue
            if self.barrier is not None and job.priority < self.barrier.priority:
                self._waits(job, f"held back for job {self.barrier.id} (higher priority)")
                continue
            if self._start_warm(job):
                continue
            if not only_warm:
                closed = self._closed()
                if closed is None:
                    self._consider(job)
                    self._raise_barrier(job)
                    continue
                only_warm = True
                self._closed_for(job, closed)
            else:
                # Nothing new starts; a queued job may still be one others' memory blocks.
                self._classify(job)
            self._raise_barrier(job)
            if not (self.others_hold or self._warm_possible()):
                break

    def _raise_barrier(self, job: Job) -> None:
        """A job left waiting for our own jobs holds back lower-priority ones, warm starts
        too: a long low-priority file would keep the memory and compute it waits for."""
        if job.id not in self.result.reasons or job.id in self.result.blocked:
            return
        if self.barrier is None or job.priority > self.barrier.priority:
            self.barrier = job

    def _closed_for(self, job: Job, closed: str) -> None:
        """No new instance can start anywhere: ``job`` waits for the reason that closes them."""
        self._blocked(job)
        self.result.default_reason = closed
        # Idle instances may be what closes the devices: the head may evict them.
        evicted = self._evict_for(job)
        if evicted is not None:
            self.result.reasons[job.id] = releasing(evicted)
        self._classify(job)

    def _waits(self, job: Job, reason: str) -> None:
        self.result.reasons[job.id] = reason
        self._blocked(job)

    def _blocked(self, job: Job) -> None:
        """``job`` does not start now; from here on, the depth bound counts."""
        self.counting = True
        if self.first_waiting is None:
            self.first_waiting = job.id

    def _stop_reason(self) -> None:
        hold = self.result.hold
        head = hold.job_id if hold is not None else self.first_waiting
        self.result.default_reason = (
            f"queued behind job {head} and {self.settings.backfill_depth} others"
        )

    def _closed(self) -> str | None:
        """Why no new instance can start anywhere now, or None."""
        if self.total >= self.settings.max_instances_total:
            return f"instance cap reached ({self.total}/{self.settings.max_instances_total})"
        if not self.open_devs:
            return closed_summary(self.devs, self.settings, self.now)
        return None

    def _warm_possible(self) -> bool:
        """Whether an unused idle instance could still take a queued job."""
        return any(
            inst.iid not in self.used
            for key, pairs in self.idle_by_key.items()
            if key in self.pending_keys
            for _, inst in pairs
        )

    def _classify(self, job: Job) -> dict[str, float] | None:
        """Reject ``job`` if no empty device could hold it, or mark it blocked if it fits on
        none beside what other processes hold; its estimates per device kind if neither."""
        ests = {kind: estimate(job, self.book, kind) for kind in self.min_loaded}
        if all(est > self.capacity[kind] for kind, est in ests.items()):
            self.result.rejects.append(Reject(job.id, too_big(max(ests.values()), self.capacity)))
            self.counting = True
            return None
        if not self.others_hold:
            return ests
        closest: tuple[float, Room, float] | None = None
        for kind, dev in self.most_usable.items():
            if ests[kind] <= dev.usable:
                return ests
            if closest is None or dev.usable - ests[kind] > closest[0]:
                closest = (dev.usable - ests[kind], dev, ests[kind])
        assert closest is not None
        _, dev, est = closest
        why = Blocked(dev.snap.id, est, dev.others, dev.snap.total_mb, dev.usable, job.model)
        self.result.blocked[job.id] = why
        self._waits(job, why.reason())
        return None

    def _consider(self, job: Job) -> None:
        """A new instance for ``job``: start it, reject it, or say why it waits."""
        ests = self._classify(job)
        if ests is None:
            return
        key = alike_key(job)
        known = self.memo.get(key)
        if known is not None and known[0] == self.generation and job.audio_s >= known[1]:
            self._waits(job, known[2])
            return
        nowhere = self._fits_nowhere(ests)
        if nowhere is not None:
            self._wait(job, *nowhere)
        elif self._try_start(job, ests) or self.batches.is_ahead(job):
            # Started; or its batch choice weighed the jobs behind it, so it is not shared.
            return
        self.memo[key] = (self.generation, job.audio_s, self.result.reasons[job.id])

    def _fits_nowhere(self, ests: dict[str, float]) -> tuple[Room, float] | None:
        """The device that comes closest, if even the smallest batch fits on no open device."""
        if self._most_free[0] != self.generation:
            self._most_free = (self.generation, best_by_kind(self.open_devs, lambda d: d.free))
        best: tuple[float, Room, float] | None = None
        for kind, dev in self._most_free[1].items():
            if ests[kind] <= dev.free:
                return None
            if best is None or dev.free - ests[kind] > best[0]:
                best = (dev.free - ests[kind], dev, ests[kind])
        return None if best is None else (best[1], best[2])

    def _try_start(self, job: Job, ests: dict[str, float]) -> bool:
        """Start ``job`` where it fits and adds throughput; False (with its reason) if it waits."""
        fitting: list[tuple[Room, float, int]] = []
        blocker: tuple[float, Room, float] | None = None  # (score, device, estimate)
        for dev in self.open_devs:
            choice = self.batches.choose(job, dev, None)
            if choice is not None:
                fitting.append((dev, choice[1], choice[0]))
                continue
            est = ests[dev.kind]
            score = 0.0 if est <= dev.free else dev.free - est
            if blocker is None or score > blocker[0]:
                blocker = (score, dev, est)
        evicted = self._evict_for(job, max((b for _, _, b in fitting), default=0))
        if evicted is not None:  # idle memory nothing queued needs buys it a bigger batch
            self._waits(job, releasing(evicted))
            return False
        worth = [c for c in fitting if self.batches.adds_throughput(job, c[0], c[2], False)]
        if worth:
            self._start_new(job, *place(worth))
            return True
        if fitting:
            dev = fitting[0][0]
            self._waits(
                job, f"{dev.snap.id} is saturated: another instance would lower its throughput"
            )
            for d, _, _ in fitting:
                d.saturated_for = job.id
            self.open_devs = self._open_devices()
            self.generation += 1
            return False
        assert blocker is not None
        self._wait(job, blocker[1], blocker[2])
        return False

    def _start_new(self, job: Job, dev: Room, est: float, batch: int) -> None:
        end = self.now + expected_duration(job, self.book, dev.kind, batch, warm=False)
        self.result.starts.append(Start(job.id, dev.snap.id, est, end, None, batch))
        dev.take(est, end)
        dev.n += 1
        dev.loads += 1
        dev.run(end, self.batches.gain(job, dev.kind, batch))
        self.total += 1
        self.open_devs = self._open_devices()
        self.generation += 1

    def _start_warm(self, job: Job) -> bool:
        """Run ``job`` on an idle instance of its engine key, if one has room to grow into it."""
        best: tuple[tuple[int, float, str], Room, InstanceView, tuple[int, float]] | None = None
        for dev, inst in self.idle_by_key.get(job.reuse_key, ()):
            if inst.iid in self.used:
                continue
            choice = self.batches.choose(job, dev, inst)
            if choice is None or not self.batches.adds_throughput(job, dev, choice[0], True):
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
        dev.run(end, self.batches.gain(job, dev.kind, batch))
        self.used.add(inst.iid)
        self.generation += 1
        return True

    def _wait(self, job: Job, bdev: Room, est: float) -> None:
        """``job`` fits nowhere: say why, evict idle instances for it, and hold memory for it."""
        if bdev.hold is not None and est <= bdev.free:
            reason = f"held back for job {bdev.hold.job_id} (higher priority) on {bdev.snap.id}"
        else:
            reason = (
                f"waiting for memory on {bdev.snap.id} (needs {gib(est)} GiB, "
                f"{gib(max(0.0, bdev.free))} free after reservations: "
                "waiting for our running jobs)"
            )
        if self.result.hold is None:
            evicted = self._evict_for(job)
            if evicted:
                reason = releasing(evicted)
        self._waits(job, reason)
        if self.result.hold is None:
            if not self.settings.backfill:
                self.result.default_reason = f"waiting behind job {job.id} (strict order)"
                return
            self.result.hold = hold_for(job, self.devs, self.book, self.now)
            if self.result.hold is not None:
                self.generation += 1

    def _evict_for(self, job: Job, batch_now: int | None = None) -> str | None:
        """Evict idle instances for ``job``: to make room at all, or, given the batch it
        gets now (``batch_now``; 0 if none), for a bigger one; where, if anywhere."""
        if batch_now is None:
            releases, device = evict_for(job, self.devs, self.used, self.book)
        else:
            releases, device = reclaim_for(
                lambda dev: self.batches.choose(job, dev, None), job, self.open_devs,
                self.used, self.pending_keys, batch_now,
            )  # fmt: skip
        self.result.releases.extend(releases)
        if releases:
            self.generation += 1
        return device

    def release_idle(self) -> None:
        keep = 0.0 if self.first_waiting else self.settings.keep_alive_s  # see core/idle.py
        idle = release_idle(self.devs, self.used, self.pending_keys, self.now, keep)
        self.result.releases.extend(idle)

    def _open_devices(self) -> list[Room]:
        return [
            d
            for d in self.devs
            if d.closed_reason(self.settings, self.now) is None
            and d.free >= self.min_loaded[d.kind]
        ]
