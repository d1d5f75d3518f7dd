"""Where vramscribe keeps what outlives a run: learned footprints and run folders."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def data_dir() -> Path:
    """``$VRAMSCRIBE_DATA``, else the XDG data folder (``~/.local/share/vramscribe``)."""
    env = os.environ.get("VRAMSCRIBE_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vramscribe"


def new_run_dir(root: Path | None = None) -> Path:
    runs = (root or data_dir()) / "runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = runs / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError("cannot create a run folder")


HOST_DIR_ENV = "VRAMSCRIBE_HOST_DIR"


def host_dir() -> Path:
    """The folder every vramscribe process on this host shares: the reservation ledger,
    the scheduler locks of shared stores. ``$VRAMSCRIBE_HOST_DIR``, else ``vramscribe``
    in the system's temporary folder (made on first use, writable by every user)."""
    configured = os.environ.get(HOST_DIR_ENV)
    folder = Path(configured) if configured else Path(tempfile.gettempdir()) / "vramscribe"
    folder.mkdir(parents=True, exist_ok=True)
    if not configured:
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)  # several users' processes share it, like /tmp
    return folder
