"""Where vramscribe keeps what outlives a run: learned footprints and run folders."""

from __future__ import annotations

import os
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
