"""The CPU as a device: host RAM for memory, cores for the instance cap.

On the CPU, memory rarely binds before compute does: two instances sharing a
core are each half as fast, so the cap on instances comes from the cores this
process may run on and the threads each instance uses. Memory still matters on
small hosts, so readings report RAM the way NVML reports device memory: what
the OS could hand out now, and the resident memory of each of our workers.
"""

from __future__ import annotations

import os
import threading

import psutil

from vramscribe.devices.base import Reading

MIB = 1024.0 * 1024.0


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class CpuDevice:
    """Host RAM and cores; worker pids are tracked so readings can attribute memory.

    ``memory_fraction`` offers only part of the host's RAM: the rest is left to
    whatever else runs here, as if it were used by a neighbour.
    """

    def __init__(self, threads_per_instance: int = 2, memory_fraction: float = 1.0) -> None:
        if threads_per_instance < 1:
            raise ValueError(f"threads_per_instance must be at least 1, got {threads_per_instance}")
        if not 0.0 < memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
        self.threads_per_instance = threads_per_instance
        self.memory_fraction = memory_fraction
        self._max_instances = max(1, usable_cores() // threads_per_instance)
        self._tracked: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return "cpu"

    @property
    def kind(self) -> str:
        return "cpu"

    @property
    def max_instances(self) -> int | None:
        return self._max_instances

    @property
    def reading_lag_s(self) -> float:
        """psutil reads resident memory as it is now."""
        return 0.0

    def track(self, pid: int) -> None:
        """Attribute ``pid``'s resident memory to us from now on.

        The process handle is kept so that a reused pid is never mistaken for
        our worker (psutil compares creation times).
        """
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        with self._lock:
            self._tracked[pid] = proc

    def untrack(self, pid: int) -> None:
        with self._lock:
            self._tracked.pop(pid, None)

    def read(self, now: float) -> Reading:
        # Workers first: memory they take before the host is read is then counted
        # twice (safe), never missed.
        processes = self._resident()
        vm = psutil.virtual_memory()
        total = vm.total * self.memory_fraction / MIB
        withheld = vm.total * (1.0 - self.memory_fraction) / MIB
        free = min(total, max(0.0, vm.available / MIB - withheld))
        return Reading(now, total, free, processes)

    def _resident(self) -> dict[int, float]:
        with self._lock:
            tracked = list(self._tracked.items())
        rss: dict[int, float] = {}
        for pid, proc in tracked:
            try:
                if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(pid)
                rss[pid] = proc.memory_info().rss / MIB
            except psutil.NoSuchProcess:
                # Exited: its memory is back, and its pid may be reused by a stranger.
                self._forget(pid, proc)
            except psutil.AccessDenied:
                continue
        return rss

    def _forget(self, pid: int, proc: psutil.Process) -> None:
        """Stop tracking an exited worker unless ``track`` has since replaced it."""
        with self._lock:
            if self._tracked.get(pid) is proc:
                del self._tracked[pid]
