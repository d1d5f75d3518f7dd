"""How the runner starts workers: a seam between its decisions and real processes.

The runner hands a launcher a :class:`WorkerSpec` and a ``deliver`` callback;
the launcher starts the worker and calls ``deliver(pid, message)`` for each
protocol message, then ``deliver(pid, None)`` when the worker's output ends.
:class:`ProcessLauncher` runs ``python -m vramscribe.worker`` in a fresh
interpreter (never a fork: CUDA does not survive one). The fake in
:mod:`vramscribe.runtime.fake_launcher` speaks the same protocol on a test's
command, so the runner's decisions can be tested on a fake clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from vramscribe.protocol import Message, WorkerSpec, decode
from vramscribe.runtime.spares import adopt, start_worker

Deliver = Callable[[int, Message | None], None]


class WorkerHandle(Protocol):
    """A started worker, as the runner controls it."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        ...

    def kill(self) -> None:
        """End the worker and everything it started (its process group)."""
        ...

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; the exit code, or None if it still runs."""
        ...

    def send(self, spec: WorkerSpec) -> bool:
        """Give the (idle) worker its next job; False if it can no longer take one."""
        ...

    def close(self) -> None:
        """No more jobs: the worker exits once its current one is done."""
        ...


class Launcher(Protocol):
    def launch(self, spec: WorkerSpec, log_path: Path, deliver: Deliver) -> WorkerHandle:
        """Start a worker for ``spec``; its stderr goes to ``log_path``."""
        ...


class ProcessHandle:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send(self, spec: WorkerSpec) -> bool:
        stdin = self.proc.stdin
        with self._lock:
            if stdin is None or stdin.closed:
                return False
            try:
                stdin.write(spec.to_json() + "\n")
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return False
        return True

    def close(self) -> None:
        with self._lock, contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()


class ProcessLauncher:
    """Each worker a fresh ``python -m vramscribe.worker`` in its own process group (or a
    spare started before the command line's imports: :mod:`vramscribe.runtime.spares`)."""

    def launch(self, spec: WorkerSpec, log_path: Path, deliver: Deliver) -> ProcessHandle:
        proc = adopt(log_path)
        if proc is None:
            with open(log_path, "w") as log:
                proc = start_worker(log)
        assert proc.stdout is not None
        handle = ProcessHandle(proc)
        handle.send(spec)
        threading.Thread(target=_pump, args=(proc.pid, proc.stdout, deliver), daemon=True).start()
        return handle


def _pump(pid: int, stream: IO[str], deliver: Deliver) -> None:
    for line in stream:
        message = decode(line)
        if message is not None:
            deliver(pid, message)
    deliver(pid, None)
