"""Group commit: new jobs from many threads stored in one transaction.

Every commit to the store waits for the disk (SQLite in WAL mode syncs the log
on each commit, a few milliseconds). When many requests add jobs at once, the
first to arrive becomes the leader: it takes every job queued so far and
stores them with one transaction, while the ones that arrive meanwhile queue
for the next. Each caller still returns only once its own job is committed,
so a job is never acknowledged before it is durable. If a group fails as a
whole, its jobs are stored one by one, so one bad record fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from vramscribe.store.records import JobRecord
from vramscribe.store.store import Store


@dataclass
class _Slot:
    record: JobRecord
    stored: JobRecord | None = None
    error: Exception | None = None
    done: bool = False


class GroupCommit:
    """:meth:`add` is :meth:`Store.add`, with concurrent calls sharing a transaction.

    ``many`` and ``one`` store a group and a single record (default: the store's
    ``add_many`` and ``add``; a scheduling service passes its leases' own, which
    store each job already leased).
    """

    def __init__(
        self,
        store: Store,
        many: Callable[[list[JobRecord]], list[JobRecord]] | None = None,
        one: Callable[[JobRecord], JobRecord] | None = None,
    ) -> None:
        self._many = many or store.add_many
        self._one = one or store.add
        self._cv = threading.Condition()
        self._queue: list[_Slot] = []
        self._leading = False

    def add(self, record: JobRecord) -> JobRecord:
        (stored,) = self.add_each([record])
        if isinstance(stored, Exception):
            raise stored
        return stored

    def add_each(self, records: list[JobRecord]) -> list[JobRecord | Exception]:
        """Store ``records``; each one's stored record, or the error that refused it."""
        slots = [_Slot(r) for r in records]
        with self._cv:
            self._queue.extend(slots)
            while not all(s.done for s in slots):
                if self._leading:
                    self._cv.wait()
                    continue
                self._leading = True
                group, self._queue = self._queue, []
                self._cv.release()
                try:
                    self._commit(group)
                finally:
                    self._cv.acquire()
                    self._leading = False
                    self._cv.notify_all()
        return [s.stored if s.stored is not None else _error(s) for s in slots]

    def _commit(self, group: list[_Slot]) -> None:
        try:
            stored = self._many([s.record for s in group])
            for slot, rec in zip(group, stored, strict=True):
                slot.stored = rec
        except Exception:
            for slot in group:
                try:
                    slot.stored = self._one(slot.record)
                except Exception as exc:
                    slot.error = exc
        for slot in group:
            slot.done = True


def _error(slot: _Slot) -> Exception:
    return slot.error or RuntimeError(f"job {slot.record.id} was not stored")
