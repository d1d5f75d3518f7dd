"""Idle (warm) instances: which to release, and which to evict for a job that waits.

An idle instance keeps its model loaded for the next job of its engine key.
It is released once nothing queued can use it, after the keep-alive if no job
waits (the keep-alive is for a service with nothing to do; while a job waits,
such an instance only holds memory and compute that job may need). It is
evicted when the job at the head of the queue fits nowhere and its memory
would make room (an instance of the head job's own key that could host it is
never evicted), and when the memory of instances nothing queued can use would
give a new job a bigger batch than it gets now: kept, they squeezed every new
job on a 16 GiB GPU into a smaller batch for the whole keep-alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job
from vramscribe.core.room import Room, batch_candidates, estimate, held
from vramscribe.core.snapshot import InstanceView


@dataclass(frozen=True, slots=True)
class Release:
    """End the idle instance ``instance_id`` and give its memory back."""

    instance_id: str
    device_id: str
    reason: str


def evict_for(
    job: Job, devs: list[Room], used: set[str], book: FootprintBook
) -> tuple[list[Release], str | None]:
    """Release the longest-idle instances on the first device where that makes room
    for ``job``, as a new instance or on the idle instance of its key that needs the
    least growth (that one is never evicted); the releases and the device's id."""
    for dev in sorted(devs, key=lambda d: d.snap.id):
        est = estimate(job, book, dev.kind)
        if est > dev.usable:
            continue
        own = [i for i in dev.idle if i.iid not in used and i.key == job.reuse_key]
        host = max(own, key=held, default=None)
        # Room needed: a new instance's estimate, or only the growth of the warm host.
        need = est if host is None else est - held(host)
        victims = _victims(dev, used, host, need)
        if victims is not None:
            used.update(i.iid for i in victims)
            why = f"evicted for job {job.id} ({job.model})"
            return [Release(i.iid, dev.snap.id, why) for i in victims], dev.snap.id
    return [], None


def _victims(
    dev: Room, used: set[str], host: InstanceView | None, need: float
) -> list[InstanceView] | None:
    """The longest-idle instances whose memory makes ``need`` fit (None: no such set)."""
    cap_ok = host is not None or dev.n < dev.cap
    victims: list[InstanceView] = []
    free, n = dev.free, dev.n
    for inst in dev.idle:
        if free >= need and (cap_ok or n < dev.cap):
            break
        if inst.iid in used or inst is host:
            continue
        victims.append(inst)
        free += held(inst)
        n -= 1
    if victims and free >= need and (cap_ok or n < dev.cap):
        return victims
    return None


def releasing(device_id: str) -> str:
    """The reason of a job that waits for evicted instances' memory."""
    return f"waiting for idle instances on {device_id} to release their memory"


def reclaim_for(
    choose: Callable[[Room], tuple[int, float] | None],
    job: Job,
    devs: list[Room],
    used: set[str],
    pending_keys: set[str],
    batch_now: int,
) -> tuple[list[Release], str | None]:
    """Evict idle instances nothing queued can use on the first device where their memory
    gives ``job`` a bigger batch than the ``batch_now`` it gets anywhere now (0: it fits
    nowhere); the releases and the device's id. ``choose`` picks the batch size and
    estimate on a device as it stands."""
    if batch_now >= max(batch_candidates(job)):
        return [], None  # it gets its biggest batch already
    for dev in devs:
        spare = stale(dev, used, pending_keys)
        freed = sum(held(i) for i in spare)
        if freed <= 0:
            continue
        dev.free += freed
        choice = choose(dev)
        dev.free -= freed
        if choice is None or choice[0] <= batch_now:
            continue
        releases = reclaim(dev, spare, choice[1], job)
        if releases:
            used.update(r.instance_id for r in releases)
            return releases, dev.snap.id
    return [], None


def stale(dev: Room, used: set[str], pending_keys: set[str]) -> list[InstanceView]:
    """Idle instances on ``dev`` that nothing queued can use, longest idle first: they keep
    their memory only for the keep-alive, so a new job may claim it at once."""
    return [i for i in dev.idle if i.iid not in used and i.key not in pending_keys]


def reclaim(dev: Room, spare: list[InstanceView], need: float, job: Job) -> list[Release]:
    """The longest-idle of ``spare`` whose memory makes ``need`` fit on ``dev``, released
    for ``job``'s bigger batch (none if even all of them would not do)."""
    victims: list[InstanceView] = []
    free = dev.free
    for inst in spare:
        if free >= need:
            break
        victims.append(inst)
        free += held(inst)
    if free < need:
        return []
    why = f"evicted for job {job.id} ({job.model}): its batch needs the memory"
    return [Release(i.iid, dev.snap.id, why) for i in victims]


def release_idle(
    devs: list[Room], used: set[str], pending_keys: set[str], now: float, keep_alive_s: float
) -> list[Release]:
    """Idle instances nothing pending can use, once ``keep_alive_s`` has passed."""
    out = []
    for dev in devs:
        for inst in dev.idle:
            if inst.iid in used or inst.key in pending_keys:
                continue
            idle_for = now - (inst.idle_since or now)
            if idle_for < keep_alive_s:
                continue
            why = "nothing queued can use it"
            if keep_alive_s > 0:
                why = f"idle for {idle_for:.0f} s and nothing queued can use it"
            out.append(Release(inst.iid, dev.snap.id, why))
            used.add(inst.iid)
    return out
