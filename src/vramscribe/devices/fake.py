"""A fake GPU: scripted neighbours, per-process memory, lagging readings, real OOMs.

It behaves like the parts of a GPU that matter to admission: a fixed total,
memory used by processes that are not ours (changing over time by a script),
memory per process id for our instances, and readings that reflect
allocations only ``lag_s`` seconds later, as NVML does while a model loads.
An allocation beyond the real total fails with :class:`DeviceOutOfMemory`,
so a policy that overbooks is caught, not just scored.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from vramscribe.devices.base import Reading
from vramscribe.errors import DeviceOutOfMemory

FOREIGN = -1  # pseudo process id of the neighbour


@dataclass(slots=True)
class FakeDevice:
    """Memory bookkeeping of one fake GPU on a caller-supplied clock.

    ``foreign_script`` is a list of ``(time, mb)`` steps: from ``time`` on, the
    neighbour wants ``mb``. If the device cannot give it, the neighbour stays
    where it was and ``foreign_oom_events`` counts the failure: we crowded it out.
    """

    id: str
    total_mb: float
    lag_s: float = 0.0
    foreign_script: list[tuple[float, float]] = field(default_factory=list)
    kind: str = "fake"
    max_instances: int | None = None
    used: dict[int, float] = field(default_factory=dict)
    oom_events: int = 0
    foreign_oom_events: int = 0
    _times: list[float] = field(default_factory=list)
    _states: list[dict[int, float]] = field(default_factory=list)
    _script_pos: int = 0

    def __post_init__(self) -> None:
        self.foreign_script = sorted(self.foreign_script)
        self._record(float("-inf"))

    @property
    def reading_lag_s(self) -> float:
        return self.lag_s

    @property
    def used_mb(self) -> float:
        return sum(self.used.values())

    @property
    def free_mb(self) -> float:
        """The true free memory now (no lag): what an allocation is checked against."""
        return self.total_mb - self.used_mb

    def advance(self, now: float) -> None:
        """Apply the neighbour's script up to ``now``."""
        while (
            self._script_pos < len(self.foreign_script)
            and self.foreign_script[self._script_pos][0] <= now
        ):
            at, want = self.foreign_script[self._script_pos]
            self._script_pos += 1
            have = self.used.get(FOREIGN, 0.0)
            if want - have > self.free_mb:
                self.foreign_oom_events += 1
                continue
            self._set(FOREIGN, want, at)

    def next_script_time(self) -> float | None:
        if self._script_pos < len(self.foreign_script):
            return self.foreign_script[self._script_pos][0]
        return None

    def allocate(self, pid: int, mb: float, now: float) -> None:
        """Give ``pid`` ``mb`` more; raises DeviceOutOfMemory if it does not fit."""
        if mb <= 0:
            return
        if mb > self.free_mb + 1e-6:
            self.oom_events += 1
            raise DeviceOutOfMemory(
                f"{self.id}: out of memory allocating {mb:.0f} MB "
                f"({self.free_mb:.0f} MB free of {self.total_mb:.0f} MB)"
            )
        self._set(pid, self.used.get(pid, 0.0) + mb, now)

    def release(self, pid: int, now: float) -> float:
        """Free everything ``pid`` holds (the process exited); returns the amount."""
        mb = self.used.get(pid, 0.0)
        if pid in self.used:
            del self.used[pid]
            self._record(now)
        return mb

    def reading(self, now: float) -> Reading:
        """What a query at ``now`` reports: the state as of ``now - lag_s``."""
        idx = bisect.bisect_right(self._times, now - self.lag_s) - 1
        state = self._states[max(idx, 0)]
        procs = {pid: mb for pid, mb in state.items() if pid != FOREIGN}
        return Reading(now, self.total_mb, self.total_mb - sum(state.values()), procs)

    def read(self, now: float) -> Reading:
        return self.reading(now)

    def track(self, pid: int) -> None:
        """The fake records every allocation by pid."""

    def untrack(self, pid: int) -> None:
        """The fake records every allocation by pid."""

    def _set(self, pid: int, mb: float, now: float) -> None:
        self.used[pid] = mb
        self._record(now)

    def _record(self, now: float) -> None:
        if self._times and self._times[-1] == now:
            self._states[-1] = dict(self.used)
            return
        self._times.append(now)
        self._states.append(dict(self.used))
