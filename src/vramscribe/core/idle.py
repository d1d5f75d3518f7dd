"""Idle (warm) instances: which to release, and which to evict for a job that waits.

An idle instance keeps its model loaded for the next job of its engine key.
It is released once nothing queued can use it (after the keep-alive), or
evicted when the job at the head of the queue fits nowhere and its memory
would make room; an instance of the head job's own key that could host it is
never evicted.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job
from vramscribe.core.room import Room, estimate, held
from vramscribe.core.settings import Settings
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


def release_idle(
    devs: list[Room], used: set[str], pending_keys: set[str], now: float, settings: Settings
) -> list[Release]:
    """Idle instances nothing pending can use, once their keep-alive has passed."""
    out = []
    for dev in devs:
        for inst in dev.idle:
            if inst.iid in used or inst.key in pending_keys:
                continue
            idle_for = now - (inst.idle_since or now)
            if idle_for < settings.keep_alive_s:
                continue
            why = "nothing queued can use it"
            if settings.keep_alive_s > 0:
                why = f"idle for {idle_for:.0f} s and nothing queued can use it"
            out.append(Release(inst.iid, dev.snap.id, why))
            used.add(inst.iid)
    return out
