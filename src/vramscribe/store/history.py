"""A job's history rows: written one per transition, read back in order for many jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vramscribe.core.jobs import JobState, Transition
from vramscribe.store.schema import HistoryRow

CHUNK = 500
"""Ids per IN (...) list: SQLite caps the number of bound parameters in one statement."""


def histories(session: Session, job_ids: Sequence[str]) -> dict[str, tuple[Transition, ...]]:
    """The history of each of ``job_ids`` that has one, oldest step first.

    Read as plain columns rather than mapped rows: every job read (each ``GET``)
    and every state change asks, and mapping the rows cost more than the query.
    """
    h = HistoryRow
    columns = (h.job_id, h.time, h.from_state, h.to_state, h.reason)
    found: dict[str, list[Transition]] = {}
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start : start + CHUNK]
        rows = session.execute(
            select(*columns).where(h.job_id.in_(chunk)).order_by(h.job_id, h.seq)
        )
        for job_id, time, from_state, to_state, reason in rows:
            found.setdefault(job_id, []).append(
                Transition(time, JobState(from_state), JobState(to_state), reason)
            )
    return {job_id: tuple(steps) for job_id, steps in found.items()}


def numbered_history(session: Session, job_id: str) -> tuple[int, tuple[Transition, ...]]:
    """``job_id``'s history and the number of its last step (0 without one)."""
    h = HistoryRow
    rows = session.execute(
        select(h.seq, h.time, h.from_state, h.to_state, h.reason)
        .where(h.job_id == job_id)
        .order_by(h.seq)
    ).all()
    steps = tuple(Transition(t, JobState(a), JobState(b), why) for _, t, a, b, why in rows)
    return (rows[-1][0] if rows else 0), steps


def history_values(job_id: str, seq: int, step: Transition) -> dict[str, Any]:
    """The column values of one history row."""
    return {
        "job_id": job_id,
        "seq": seq,
        "time": step.time,
        "from_state": step.from_state.value,
        "to_state": step.to_state.value,
        "reason": step.reason,
    }
