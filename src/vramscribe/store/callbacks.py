"""Completion webhooks as the store keeps them (the ``callbacks`` table).

Kept so that a callback survives a restart: a job that ended while its
receiver was down, or while the service was stopping, is still delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from vramscribe.store.schema import CallbackRow
from vramscribe.store.store import Store


@dataclass(frozen=True, slots=True)
class Callback:
    job_id: str
    url: str
    attempts: int
    delivered_at: float | None
    last_error: str | None


class Callbacks:
    """The callbacks of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, job_id: str, url: str) -> None:
        with self.store._write() as session:
            session.add(CallbackRow(job_id=job_id, url=url, attempts=0))

    def get(self, job_id: str) -> Callback | None:
        with self.store._read() as session:
            row = session.get(CallbackRow, job_id)
            return None if row is None else _callback(row)

    def attempted(self, job_id: str, *, delivered_at: float | None, error: str | None) -> None:
        """Count one delivery attempt: its success time, or why it failed."""
        with self.store._write() as session:
            row = session.get(CallbackRow, job_id)
            if row is not None:
                row.attempts += 1
                row.delivered_at = delivered_at
                row.last_error = error

    def undelivered(self, max_attempts: int) -> list[Callback]:
        """Callbacks not delivered yet with attempts left (what a restart takes up again)."""
        query = select(CallbackRow).where(
            CallbackRow.delivered_at.is_(None), CallbackRow.attempts < max_attempts
        )
        with self.store._read() as session:
            return [_callback(row) for row in session.scalars(query)]


def _callback(row: CallbackRow) -> Callback:
    return Callback(row.job_id, row.url, row.attempts, row.delivered_at, row.last_error)
