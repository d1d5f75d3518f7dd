"""An API-only service: it stores jobs, and learns from the store when they end.

Its jobs run on a scheduler elsewhere (another process or host sharing the
store), so the requests that wait for a job's end (OpenAI's endpoint, a
cancellation) are told by a thread that polls the store for the jobs awaited.
A cancellation is written to the store; the job's scheduler sees at its next
heartbeat that the job has ended and stops its worker.
"""

from __future__ import annotations

import contextlib
import threading

from vramscribe.core.jobs import JobState
from vramscribe.errors import IllegalTransition
from vramscribe.store.store import Store

POLL_S = 0.5


class StoreWatcher:
    """Sets the final-state events of awaited jobs once the store shows them final."""

    def __init__(
        self, store: Store, events: dict[str, threading.Event], lock: threading.Lock
    ) -> None:
        self.store = store
        self.events = events
        self.lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            with self.lock:
                waiting = [job_id for job_id, ev in self.events.items() if not ev.is_set()]
            for job_id in waiting:
                with contextlib.suppress(Exception):  # the store may be briefly away
                    rec = self.store.get(job_id, with_history=False)
                    if rec is None or rec.status.is_final:
                        self.events[job_id].set()


def cancel_in_store(store: Store, job_id: str, now: float) -> None:
    """Cancel a job by writing it to the store; nothing to do if it already ended."""
    with contextlib.suppress(IllegalTransition, KeyError):
        store.transition(job_id, JobState.CANCELLED, now, "cancelled by client")
