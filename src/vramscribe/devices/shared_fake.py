"""A fake GPU shared by real processes: state in a JSON file, wall-clock time.

:class:`~vramscribe.devices.fake.FakeDevice` lives in one process on a virtual
clock, which suits the simulator. Integration tests run real worker processes,
each with its own pid, so they need the same fake (a fixed total, a neighbour,
memory per process, readings that lag, OOM beyond the real total) in a place
every process can reach: a JSON file, changed under an exclusive ``flock`` and
replaced atomically, so a reader never sees half a write and two allocations
never both take the last free megabyte.

Like the real driver, the device takes back the memory of processes that have
exited: every operation drops pids that are gone (or zombies). The drop is
recorded in the history like any release, so lagged readings still show the
memory for ``lag_s`` after it was noticed.

Times are ``time.time()``; ``read(now)`` expects ``now`` on that clock.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

import psutil

from vramscribe.devices.base import Reading
from vramscribe.errors import DeviceOutOfMemory

# History kept beyond the lag, so a reading a little in the past still has its state.
KEEP_S = 5.0


class _Snapshot(TypedDict):
    t: float
    used: dict[str, float]
    foreign_mb: float


class _Doc(TypedDict):
    device_id: str
    total_mb: float
    lag_s: float
    foreign_mb: float
    used: dict[str, float]
    oom_events: int
    foreign_oom_events: int
    peak_used_mb: float
    history: list[_Snapshot]


@dataclass(frozen=True, slots=True)
class FakeState:
    """The device as it really is now (no lag), with its failure counters."""

    total_mb: float
    foreign_mb: float
    used: dict[int, float]
    oom_events: int
    foreign_oom_events: int
    peak_used_mb: float

    @property
    def used_mb(self) -> float:
        return self.foreign_mb + sum(self.used.values())

    @property
    def free_mb(self) -> float:
        return self.total_mb - self.used_mb


def _alive(pid: int) -> bool:
    """Whether ``pid`` still holds memory: a zombie has already given its memory back."""
    if not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _used_mb(doc: _Doc) -> float:
    return doc["foreign_mb"] + sum(doc["used"].values())


class SharedFakeDevice:
    """A handle on a fake GPU file; any number of processes may open the same path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with _flock(self.path):
            doc = _load(self.path)
        self._id = doc["device_id"]
        self.total_mb = doc["total_mb"]
        self.lag_s = doc["lag_s"]

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        device_id: str = "fake:0",
        *,
        total_mb: float,
        lag_s: float = 0.0,
        foreign_mb: float = 0.0,
    ) -> SharedFakeDevice:
        """Write a fresh device file (replacing any old one) and open it."""
        if total_mb <= 0 or lag_s < 0 or not 0 <= foreign_mb <= total_mb:
            raise ValueError(
                f"need total_mb > 0, lag_s >= 0 and 0 <= foreign_mb <= total_mb "
                f"(got {total_mb}, {lag_s}, {foreign_mb})"
            )
        doc: _Doc = {
            "device_id": device_id,
            "total_mb": float(total_mb),
            "lag_s": float(lag_s),
            "foreign_mb": float(foreign_mb),
            "used": {},
            "oom_events": 0,
            "foreign_oom_events": 0,
            "peak_used_mb": float(foreign_mb),
            "history": [{"t": time.time(), "used": {}, "foreign_mb": float(foreign_mb)}],
        }
        with _flock(Path(path)):
            _save(Path(path), doc)
        return cls(path)

    @property
    def id(self) -> str:
        return self._id

    @property
    def kind(self) -> str:
        return "fake"

    @property
    def max_instances(self) -> int | None:
        return None

    @property
    def reading_lag_s(self) -> float:
        return self.lag_s

    def track(self, pid: int) -> None:
        """The fake records every allocation by pid."""

    def untrack(self, pid: int) -> None:
        """The fake records every allocation by pid."""

    def allocate(self, pid: int, mb: float) -> None:
        """Give ``pid`` ``mb`` more; raises DeviceOutOfMemory if the real free memory is short."""
        if mb <= 0:
            return
        error: DeviceOutOfMemory | None = None
        with self._transaction() as (doc, now):
            free = doc["total_mb"] - _used_mb(doc)
            if mb > free + 1e-6:
                doc["oom_events"] += 1
                error = DeviceOutOfMemory(
                    f"{self._id}: out of memory allocating {mb:.0f} MB "
                    f"({free:.0f} MB free of {doc['total_mb']:.0f} MB)"
                )
            else:
                key = str(pid)
                doc["used"][key] = doc["used"].get(key, 0.0) + mb
                _record(doc, now)
        if error is not None:
            raise error

    def release(self, pid: int) -> float:
        """Free everything ``pid`` holds; returns the amount."""
        with self._transaction() as (doc, now):
            mb = doc["used"].pop(str(pid), 0.0)
            if mb:
                _record(doc, now)
        return mb

    def set_foreign(self, mb: float) -> bool:
        """Make the neighbour want ``mb``; if that does not fit it keeps what it had.

        Returns whether the neighbour got its memory; a refusal is counted in
        ``foreign_oom_events``: our instances crowded it out.
        """
        if mb < 0:
            raise ValueError(f"foreign memory cannot be negative, got {mb}")
        with self._transaction() as (doc, now):
            grow = mb - doc["foreign_mb"]
            if grow > doc["total_mb"] - _used_mb(doc) + 1e-6:
                doc["foreign_oom_events"] += 1
                return False
            doc["foreign_mb"] = float(mb)
            _record(doc, now)
        return True

    def read(self, now: float) -> Reading:
        """What a query at ``now`` reports: the state as of ``now - lag_s``.

        The query runs a moment after ``now`` (the caller took the time first), and
        it is then that processes found gone are dropped: the state is taken as of
        that moment less the lag, so a lag of 0 never reports a process already
        known to be dead.
        """
        with self._transaction() as (doc, asked):
            history = doc["history"]
        target = max(now, asked) - self.lag_s
        state = history[0]
        for snap in history:
            if snap["t"] > target:
                break
            state = snap
        procs = {int(pid): mb for pid, mb in state["used"].items()}
        free = doc["total_mb"] - state["foreign_mb"] - sum(procs.values())
        return Reading(now, doc["total_mb"], free, procs)

    def true_state(self) -> FakeState:
        """The unlagged state and counters, for tests to check what really happened."""
        with self._transaction() as (doc, _):
            pass
        return FakeState(
            total_mb=doc["total_mb"],
            foreign_mb=doc["foreign_mb"],
            used={int(pid): mb for pid, mb in doc["used"].items()},
            oom_events=doc["oom_events"],
            foreign_oom_events=doc["foreign_oom_events"],
            peak_used_mb=doc["peak_used_mb"],
        )

    @contextmanager
    def _transaction(self) -> Iterator[tuple[_Doc, float]]:
        """Lock, load, let the caller change the state, save.

        Dead processes are dropped and old history pruned first, so every
        operation sees the device as the driver would. The time is taken under
        the lock, which keeps the history in order across processes.
        """
        with _flock(self.path):
            doc = _load(self.path)
            now = time.time()
            dead = [pid for pid in doc["used"] if not _alive(int(pid))]
            for pid in dead:
                del doc["used"][pid]
            if dead:
                _record(doc, now)
            _prune(doc, now)
            yield doc, now
            _save(self.path, doc)


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the device at ``path`` (a sibling ``.lock`` file).

    The lock is on a separate file because the state file itself is replaced,
    not rewritten, and a lock on a replaced inode would protect nothing.
    """
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> _Doc:
    return cast(_Doc, json.loads(path.read_text()))


def _save(path: Path, doc: _Doc) -> None:
    """Write to a temporary file and rename it over the old one: readers never see half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(doc: _Doc, now: float) -> None:
    """Append the current state to the history and raise the peak if need be."""
    history = doc["history"]
    at = max(now, history[-1]["t"]) if history else now
    snap: _Snapshot = {"t": at, "used": dict(doc["used"]), "foreign_mb": doc["foreign_mb"]}
    if history and history[-1]["t"] == at:
        history[-1] = snap
    else:
        history.append(snap)
    doc["peak_used_mb"] = max(doc["peak_used_mb"], _used_mb(doc))


def _prune(doc: _Doc, now: float) -> None:
    """Forget states no reading can ask for, keeping the one in force at the cutoff."""
    cutoff = now - doc["lag_s"] - KEEP_S
    history = doc["history"]
    keep_from = 0
    for i, snap in enumerate(history):
        if snap["t"] > cutoff:
            break
        keep_from = i
    del history[:keep_from]
