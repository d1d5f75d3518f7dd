"""Fan events out from the scheduler thread to any number of async subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

Event = dict[str, Any]


class Broadcaster:
    """Thread-safe publish, asyncio subscribe; a slow subscriber loses old events, not us."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subs: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(self.maxsize)
        with self._lock:
            self._subs.add((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._subs = {s for s in self._subs if s[1] is not q}

    def publish(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, q, event)


def _offer(q: asyncio.Queue[Event], event: Event) -> None:
    if q.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
    q.put_nowait(event)
