"""The host-wide reservation ledger: every vramscribe process's reservations per device.

Two vramscribe processes on one host (a CLI batch while the service runs, two
batches) each see the other's starting instances as free memory until the
driver reports it, and both would admit into the same gigabytes. So every
process holds the ledger's lock while it reads its devices and plans
(``Runner.admission``), subtracts from each reading what the *other* processes
reserved and do not visibly hold yet, and, before letting go of the lock,
writes its own outstanding reservations. Entries of processes that are gone
(or whose pid now names another process) are dropped on every access.

The ledger is a JSON file in the host folder, locked with ``flock`` on a
sibling file and replaced atomically. Devices are named host-wide: a GPU by its
NVML index, a shared fake GPU by its file, the CPU by ``cpu``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from vramscribe.core.observe import Tracked
from vramscribe.devices.base import Device, Reading
from vramscribe.runtime.runner import Runner

log = logging.getLogger("vramscribe.cluster")
LEDGER_FILE = "reservations.json"
Share = dict[str, float]
"""One process's memory on one device: ``held`` (visible in readings) and ``outstanding``."""


def device_key(device: Device) -> str:
    """A name for the physical device that every process on the host agrees on."""
    path = getattr(device, "path", None)
    if isinstance(path, Path):
        return f"file:{path.resolve()}"
    index = getattr(device, "index", None)
    if device.kind == "cuda" and isinstance(index, int):
        return f"nvml:{index}"
    return f"{device.kind}:{device.id}"


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


class HostLedger:
    """This process's view of the ledger: what the others reserved, and its own entry."""

    def __init__(self, path: Path, pid: int | None = None) -> None:
        self.path = path
        self.pid = os.getpid() if pid is None else pid
        self._started = _started(self.pid)
        self.others: dict[str, float] = {}
        """Per device key: what other live processes reserved and do not visibly hold."""
        self.managed: dict[str, float] = {}
        """Per device key: what other live processes hold or reserved, in all."""

    @contextmanager
    def session(self, ours: Callable[[], dict[str, Share]]) -> Iterator[None]:
        """Hold the lock, learn the others' reservations, then record ``ours()``."""
        try:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            log.warning("reservation ledger unavailable (%s); planning without it", exc)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self._live_entries()
            self.others = _sum_others(entries, str(self.pid), "outstanding")
            self.managed = _sum_others(entries, str(self.pid), "held", "outstanding")
            yield
            mine = {key: share for key, share in ours().items() if any(share.values())}
            if mine:
                entries[str(self.pid)] = {"started": self._started, "devices": mine}
            else:
                entries.pop(str(self.pid), None)
            self._save(entries)
        finally:
            os.close(fd)

    def leave(self) -> None:
        """Remove this process's entry (a clean end; a killed process is dropped by others)."""
        with self.session(dict):
            pass  # an empty share removes the entry

    def _live_entries(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        alive: dict[str, dict[str, Any]] = {}
        for pid, entry in raw.items():
            started = _started(int(pid)) if pid.isdigit() else None
            if started is not None and isinstance(entry, dict):
                recorded = entry.get("started")
                if recorded is None or abs(float(recorded) - started) < 1.0:
                    alive[pid] = entry
        return alive

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f)
            os.chmod(tmp, 0o666)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _sum_others(entries: dict[str, dict[str, Any]], me: str, *parts: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for pid, entry in entries.items():
        if pid == me:
            continue
        for key, share in dict(entry.get("devices", {})).items():
            if isinstance(share, dict):
                mb = sum(float(share.get(part, 0.0)) for part in parts)
                total[key] = total.get(key, 0.0) + mb
    return total


def shares(instances: list[Tracked], keys: dict[str, str]) -> dict[str, Share]:
    """Per device key: what our instances hold, and what they reserved beyond that."""
    mine: dict[str, Share] = {}
    for inst in instances:
        key = keys.get(inst.device_id)
        if key is not None:
            share = mine.setdefault(key, {"held": 0.0, "outstanding": 0.0})
            share["held"] += inst.observed_mb
            share["outstanding"] += inst.outstanding_mb
    return mine


class LedgerDevice:
    """A device whose readings count the other processes' outstanding reservations as used."""

    def __init__(self, device: Device, ledger: HostLedger) -> None:
        self.inner = device
        self.ledger = ledger
        self.key = device_key(device)

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def max_instances(self) -> int | None:
        return self.inner.max_instances

    def read(self, now: float) -> Reading:
        reading = self.inner.read(now)
        taken = min(self.ledger.others.get(self.key, 0.0), reading.free_mb)
        if taken <= 0:
            return reading
        return Reading(reading.time, reading.total_mb, reading.free_mb - taken, reading.processes)

    def track(self, pid: int) -> None:
        self.inner.track(pid)

    def untrack(self, pid: int) -> None:
        self.inner.untrack(pid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def share_reservations(devices: list[Device], ledger: HostLedger) -> list[Device]:
    """The devices, wrapped so that their readings subtract the others' reservations."""
    return [LedgerDevice(d, ledger) for d in devices]


def attach(runner: Runner, ledger: HostLedger) -> None:
    """Make ``runner`` plan under the ledger's lock and record its reservations there."""
    keys = {dev_id: device_key(d) for dev_id, d in runner.devices.items()}

    def ours() -> dict[str, Share]:
        return shares(runner.shell.instances, keys)

    @contextmanager
    def admission() -> Iterator[None]:
        with ledger.session(ours):
            runner.shell.managed = {
                dev_id: ledger.managed.get(key, 0.0) for dev_id, key in keys.items()
            }
            yield

    runner.admission = admission
