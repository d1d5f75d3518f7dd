"""Leases in the store: which scheduler owns which job, claimed with row locks.

A scheduler run has a *holder* token (one per process start) and belongs to a
*node* (one per host). It claims pending jobs that nobody holds, renews all of
its leases with one statement per heartbeat, and writes every state change
with its token (``Store.transition(holder=...)``), so a result that arrives
after the lease moved on is refused. Claims lock the job rows with ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so schedulers sharing one database never wait on
each other's candidates and never both take one job; SQLite serialises writers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from vramscribe.core.jobs import JobState
from vramscribe.store.history import histories
from vramscribe.store.records import JobRecord, from_columns
from vramscribe.store.schema import JobRow, LeaseRow, table_of
from vramscribe.store.store import Store, _apply, _insert, _locked

_ACTIVE = (JobState.LOADING.value, JobState.PROCESSING.value)
_FINAL = tuple(s.value for s in JobState if s.is_final)


@dataclass(frozen=True, slots=True)
class Holder:
    """One scheduler run: its node, its token, and how long its leases last."""

    node_id: str
    token: str
    lease_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a recovery did: jobs put back in the queue, and our own workers to end."""

    moved: list[str]
    own_pids: list[int]


class Leases:
    """Lease operations on one store for one holder."""

    def __init__(self, store: Store, holder: Holder) -> None:
        self.store = store
        self.holder = holder

    def add(self, record: JobRecord, now: float) -> JobRecord:
        """Store a new job already leased to this run, in one transaction: no other
        claim (not even this run's own heartbeat) can see it unowned."""
        (stored,) = self.add_many([record], now)
        return stored

    def add_many(self, records: list[JobRecord], now: float) -> list[JobRecord]:
        """:meth:`add` for several jobs, all in one transaction (a group commit's)."""
        until = now + self.holder.lease_s
        leases = [
            {"job_id": r.id, "node_id": self.holder.node_id, "holder": self.holder.token,
             "until": until}
            for r in records
        ]  # fmt: skip
        with self.store._write() as session:
            stored = _insert(session, records)
            if leases:
                session.execute(insert(table_of(LeaseRow)), leases)
            return stored

    def take(self, job_id: str, now: float) -> bool:
        """Lease a job this scheduler was just given; False if someone holds it already."""
        with self.store._write() as session:
            if _locked(session, job_id) is None:
                return False
            lease = session.get(LeaseRow, job_id)
            if lease is not None and lease.until >= now and lease.holder != self.holder.token:
                return False
            self._put(session, job_id, lease, now)
            return True

    def holds(self, job_id: str) -> bool:
        """Whether this run holds ``job_id``'s lease now (checked before a result is kept)."""
        with self.store._read() as session:
            lease = session.get(LeaseRow, job_id)
            return lease is not None and lease.holder == self.holder.token

    def claim(self, now: float, limit: int) -> list[JobRecord]:
        """Lease up to ``limit`` pending jobs nobody holds, in priority order, with histories."""
        if limit <= 0:
            return []
        live = select(LeaseRow.job_id).where(LeaseRow.until >= now)
        query = (
            select(JobRow)
            .where(JobRow.status == JobState.PENDING.value, JobRow.id.not_in(live))
            .order_by(JobRow.priority.desc(), JobRow.submitted_at, JobRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.store._write() as session:
            rows = list(session.scalars(query))
            # A new statement sees leases committed while we waited for the row locks.
            leases = _leases(session, [r.id for r in rows])
            taken = [r for r in rows if (x := leases.get(r.id)) is None or x.until < now]
            for row in taken:
                self._put(session, row.id, leases.get(row.id), now)
            steps = histories(session, [r.id for r in taken])
            return [from_columns(r, steps.get(r.id, ())) for r in taken]

    def renew(self, now: float) -> set[str]:
        """Extend every lease this run holds; the ids of the unfinished jobs it still holds."""
        token = self.holder.token
        with self.store._write() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.holder == token)
                .values(until=now + self.holder.lease_s)
            )
            held = session.scalars(
                select(LeaseRow.job_id)
                .join(JobRow, JobRow.id == LeaseRow.job_id)
                .where(LeaseRow.holder == token, JobRow.status.not_in(_FINAL))
            )
            return set(held)

    def release(self, job_id: str) -> None:
        """Give up one job's lease (it is back in a global queue, for any node to take)."""
        with self.store._write() as session:
            session.execute(
                delete(LeaseRow).where(
                    LeaseRow.job_id == job_id, LeaseRow.holder == self.holder.token
                )
            )

    def give_back(self, now: float, reason: str) -> list[str]:
        """This holder is lost: its running jobs go back to pending with ``reason``, and
        all its leases end. Returns the ids of every job it held that is not final."""
        token = self.holder.token
        with self.store._read() as session:
            ids = list(
                session.scalars(
                    select(LeaseRow.job_id)
                    .join(JobRow, JobRow.id == LeaseRow.job_id)
                    .where(LeaseRow.holder == token, JobRow.status.not_in(_FINAL))
                    .order_by(LeaseRow.job_id)
                )
            )
        for job_id in ids:
            with self.store._write() as session:
                row = _locked(session, job_id)
                if row is not None and row.status in _ACTIVE:
                    cleared = {"worker_pid": None, "device_id": None, "progress_s": 0.0}
                    _apply(session, row, JobState.PENDING, now, reason, cleared)
        self.release_all()
        return ids

    def release_all(self) -> None:
        """Give up every lease of this run (a clean stop): others may claim at once."""
        with self.store._write() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.holder == self.holder.token))

    def recover(self, now: float, *, own_node_dead: bool) -> Recovered:
        """Return to the queue the running jobs whose lease expired.

        With ``own_node_dead`` (a scheduler starting on this node, sure that no
        other one runs here) the leases of this node's earlier runs count as
        expired too. Only the worker pids of this node's jobs are returned: a
        node ends its own orphans, never another host's pids.
        """
        node = self.holder.node_id
        with self.store._read() as session:
            rows = session.execute(
                select(JobRow.id, LeaseRow.node_id, LeaseRow.holder, LeaseRow.until)
                .outerjoin(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(JobRow.status.in_(_ACTIVE))
                .order_by(JobRow.id)
            ).all()
        candidates = [
            job_id
            for job_id, owner, token, until in rows
            if owner is None
            or (until is not None and until < now)
            or (own_node_dead and owner == node and token != self.holder.token)
        ]
        moved: list[str] = []
        pids: list[int] = []
        for job_id in candidates:
            pid = self._requeue(job_id, now, own_node_dead)
            if pid is not False:
                moved.append(job_id)
                if isinstance(pid, int):
                    pids.append(pid)
        if own_node_dead:
            with self.store._write() as session:
                session.execute(
                    delete(LeaseRow).where(
                        LeaseRow.node_id == node, LeaseRow.holder != self.holder.token
                    )
                )
        return Recovered(moved, pids)

    # -- plumbing ------------------------------------------------------------------
    def _requeue(self, job_id: str, now: float, own_node_dead: bool) -> int | bool | None:
        """Move one job back to pending if its lease is still lapsed; False if it was not."""
        node = self.holder.node_id
        with self.store._write() as session:
            row = _locked(session, job_id)
            if row is None or row.status not in _ACTIVE:
                return False
            lease = session.get(LeaseRow, job_id)
            mine = lease is None or lease.node_id == node
            lapsed = (
                lease is None
                or lease.until < now
                or (own_node_dead and lease.node_id == node and lease.holder != self.holder.token)
            )
            if not lapsed:
                return False
            pid = row.worker_pid if mine else None
            if lease is None:
                who = "vramscribe stopped"
            elif lease.until < now:
                who = f"node {lease.node_id} stopped renewing its lease"
            else:
                who = f"vramscribe stopped on node {lease.node_id}"
            reason = f"recovered after {who} (attempt {row.attempts} interrupted)"
            cleared = {"worker_pid": None, "device_id": None, "progress_s": 0.0}
            _apply(session, row, JobState.PENDING, now, reason, cleared)
            if lease is not None:
                session.delete(lease)
            return pid

    def _put(self, session: Session, job_id: str, lease: LeaseRow | None, now: float) -> None:
        until = now + self.holder.lease_s
        if lease is None:
            session.add(
                LeaseRow(
                    job_id=job_id,
                    node_id=self.holder.node_id,
                    holder=self.holder.token,
                    until=until,
                )
            )
        else:
            lease.node_id, lease.holder, lease.until = self.holder.node_id, self.holder.token, until


def _leases(session: Session, job_ids: Iterable[str]) -> dict[str, LeaseRow]:
    ids = list(job_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(LeaseRow).where(LeaseRow.job_id.in_(ids)).execution_options(populate_existing=True)
    )
    return {lease.job_id: lease for lease in rows}
