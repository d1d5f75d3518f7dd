"""Worker processes, and spares started before the command line's own imports.

``vramscribe transcribe`` spends about half a second importing its job store
and runtime before it can launch a worker, and each worker then spends as long
importing its engine. A spare started first does its imports on the other
cores meanwhile; the launcher gives it the first worker's spec instead of
starting a new process. A spare given nothing reads the end of its input and
exits. This module imports nothing heavy, so the command line can start spares
before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

WORKER_NICE = 10
"""How much lower than its parent's a worker's CPU priority is (``VRAMSCRIBE_WORKER_NICE``).

It only matters when the CPU is short, and then the parent should win: it is
the scheduler, and in a service the API. Eight workers starting at once (each
an interpreter importing its libraries) otherwise kept a two-core machine busy
for half a second, and every request waited that long. A GPU worker needs
little CPU; CPU transcription is background work that loses nothing when the
machine is otherwise idle.
"""

MAX_SPARES = 2
"""Spares a ``transcribe`` starts (fewer on fewer cores; ``VRAMSCRIBE_SPARES``, 0 for none).
A batch's first instances all start at once, so each spare saves one start."""

SPARE_ENV = "VRAMSCRIBE_SPARE"
"""Set in a spare's environment: the worker imports its engine before it reads a spec."""


def worker_nice() -> int:
    """The niceness workers get: ``VRAMSCRIBE_WORKER_NICE`` if set (0 keeps the parent's)."""
    value = os.environ.get("VRAMSCRIBE_WORKER_NICE", "")
    try:
        return max(0, min(19, int(value))) if value.strip() else WORKER_NICE
    except ValueError:
        return WORKER_NICE


def start_worker(stderr: IO[str], spare: bool = False) -> subprocess.Popen[str]:
    """A fresh ``python -m vramscribe.worker`` in its own process group, at lower priority."""
    # NVML numbers GPUs by bus; CUDA fastest-first unless told otherwise.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if spare:
        env[SPARE_ENV] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramscribe.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        # A process group of its own (killed as one; a terminal's Ctrl-C reaches only
        # the parent), but the parent's session: Linux shares CPU between sessions
        # first (autogroup), and eight workers in eight sessions each got as much as
        # the whole service, whose API then stalled while they started.
        process_group=0,
    )
    if nice := worker_nice():
        with contextlib.suppress(OSError):  # gone already
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, mine + nice))
    return proc


@dataclass
class Spare:
    proc: subprocess.Popen[str]
    log_path: Path


_spares: list[Spare] = []


def prestart(count: int) -> None:
    """Start ``count`` spares now (their stderr goes to temporary files until adopted)."""
    for _ in range(count):
        fd, name = tempfile.mkstemp(prefix="vramscribe-spare-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            try:
                proc = start_worker(log, spare=True)
            except OSError:
                Path(name).unlink(missing_ok=True)
                return
        _spares.append(Spare(proc, Path(name)))


def prestart_for(argv: list[str]) -> None:
    """Start spares if ``argv`` is ``vramscribe transcribe ...`` (not its help)."""
    program = Path(argv[0]) if argv else Path()
    ours = program.name == "vramscribe" or program.parent.name == "vramscribe"
    if not ours or len(argv) < 2 or argv[1] != "transcribe" or {"-h", "--help"} & set(argv):
        return
    try:
        wanted = int(os.environ.get("VRAMSCRIBE_SPARES", MAX_SPARES))
    except ValueError:
        wanted = MAX_SPARES
    prestart(max(0, min(wanted, os.cpu_count() or 1)))


def adopt(log_path: Path) -> subprocess.Popen[str] | None:
    """A running spare to serve as a new worker, its stderr now at ``log_path``; or None."""
    while _spares:
        spare = _spares.pop(0)
        if spare.proc.poll() is not None:
            spare.log_path.unlink(missing_ok=True)
            continue
        try:
            os.replace(spare.log_path, log_path)
        except OSError:  # another filesystem: the log stays where it is, linked from here
            with contextlib.suppress(OSError):
                log_path.symlink_to(spare.log_path)
        return spare.proc
    return None


def discard() -> None:
    """End the spares nobody adopted: with no spec on their input they exit at once."""
    while _spares:
        spare = _spares.pop()
        with contextlib.suppress(OSError, ValueError):
            if spare.proc.stdin is not None:
                spare.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            spare.proc.wait(timeout=5)
        if spare.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(spare.proc.pid, signal.SIGKILL)
        if spare.proc.stdout is not None:
            spare.proc.stdout.close()
        spare.log_path.unlink(missing_ok=True)


atexit.register(discard)  # a no-op unless spares were started
