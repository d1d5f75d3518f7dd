"""Remember how much memory the neighbours (processes that are not ours) used.

A neighbour that used 8 GiB a minute ago and 4 GiB now will likely want its
8 GiB back; handing those 4 GiB to a model instance would crash one of the
two. The tracker keeps a sliding-window maximum of foreign use per device,
which the runtime passes to the planner as ``foreign_peak_mb``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class NeighbourTracker:
    window_s: float = 900.0
    _seen: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def observe(self, device_id: str, now: float, foreign_mb: float) -> float:
        """Record a reading of foreign use; returns the peak over the window."""
        q = self._seen.setdefault(device_id, deque())
        # Monotonic deque: older, smaller values can never be the maximum again.
        while q and q[-1][1] <= foreign_mb:
            q.pop()
        q.append((now, foreign_mb))
        while q[0][0] < now - self.window_s:
            q.popleft()
        return q[0][1]
