"""Who this process is among vramscribe processes: its node, its host folder, its lock.

A *node* is a data folder on a host: its id (a UUID) is kept in the folder, so a
restarted scheduler is the same node and may take back what its earlier run
left. The *host folder* (``$VRAMSCRIBE_HOST_DIR``, default a ``vramscribe``
folder in the system's temporary directory) is shared by every vramscribe
process on the host: the reservation ledger and the scheduler locks of shared
stores live there. The scheduler lock is an ``flock`` held for the life of the
process, so a process killed with ``kill -9`` gives it up with its life.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import IO, Any

from vramscribe.errors import SchedulerRunning
from vramscribe.paths import host_dir

NODE_ID_FILE = "node_id"


def node_id(data_dir: Path) -> str:
    """This data folder's node id, made once (two processes creating it agree on one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / NODE_ID_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(uuid.uuid4().hex + "\n")
    for _ in range(50):  # the creator may not have written it yet
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)
    raise SchedulerRunning(f"{path} is empty; remove it and start again")


def scheduler_lock_path(data_dir: Path, store_url: str | None) -> Path:
    """The lock of the one scheduler per host and store: in the data folder for its own
    SQLite file, in the host folder (named after the store's URL) for a shared store."""
    if store_url is None:
        return data_dir / "scheduler.lock"
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return host_dir() / f"scheduler-{digest}.lock"


class SchedulerLock:
    """The scheduler lock, held until :meth:`release` or the end of the process."""

    def __init__(self, path: Path, file: IO[str]) -> None:
        self.path = path
        self._file: IO[str] | None = file

    @classmethod
    def acquire(cls, path: Path, *, node: str, address: str | None) -> SchedulerLock:
        """Take the lock, or raise ``SchedulerRunning`` naming the process that holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        file = path.open("a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _parse(file.read())
            file.close()
            raise SchedulerRunning(_refusal(holder)) from None
        file.seek(0)
        file.truncate()
        info = {
            "pid": os.getpid(),
            "address": address or "",
            "host": socket.gethostname(),
            "node": node,
            "since": time.time(),
        }
        file.write(json.dumps(info))
        file.flush()
        return cls(path, file)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _refusal(holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "unknown")
    address = holder.get("address") or "no HTTP address"
    host = holder.get("host", "this host")
    return (
        f"another vramscribe scheduler is already running on this store "
        f"(pid {pid} on {host}, {address}); stop it first, or start this one "
        "with --api-only to serve the API without scheduling"
    )
