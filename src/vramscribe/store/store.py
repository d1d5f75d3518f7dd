"""Durable job records: what the service remembers across restarts.

Every state change runs :func:`vramscribe.core.jobs.transition` on a job rebuilt
from its row, inside the transaction that writes the new status and the history
row, so the database only ever holds lifecycles the core allows and the history
is the complete record of each job. Writers lock before they read (``SELECT ...
FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): two threads moving
the same job cannot both act on the state they saw.
"""

from __future__ import annotations

import builtins
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import JobState, transition
from vramscribe.store.database import LAZY_SYNC, WRITES, connect, migrate
from vramscribe.store.history import CHUNK, histories, history_values, numbered_history
from vramscribe.store.lease_check import check_holder
from vramscribe.store.ledger import OutputLedger
from vramscribe.store.records import JobRecord, from_columns, from_values, row_values, to_columns
from vramscribe.store.schema import FootprintRow, HistoryRow, JobRow, table_of

__all__ = ["DB_FILENAME", "TRANSITION_FIELDS", "UPDATE_FIELDS", "JobRecord", "Store"]

DB_FILENAME = "vramscribe.db"
FOOTPRINT_KEY = "default"

# Fields a transition may set along with the new state; identity fields never change.
TRANSITION_FIELDS = frozenset(
    {
        "priority",
        "audio_s",
        "attempts",
        "not_before",
        "estimate_floor_mb",
        "error",
        "outputs",
        "progress_s",
        "device_id",
        "worker_pid",
        "pending_reason",
        "finished_at",
    }
)
# These describe how a job's attempts went, so they change only with a state change.
_LIFECYCLE_FIELDS = frozenset(
    {"attempts", "not_before", "estimate_floor_mb", "error", "finished_at"}
)
UPDATE_FIELDS = (TRANSITION_FIELDS - _LIFECYCLE_FIELDS) | {"updated_at"}


class Store:
    """Jobs, their histories and the footprint book in SQLite or PostgreSQL.

    Safe to share between threads: one engine (a connection pool) and a short
    session per call, so no call sees another's half-finished work.
    """

    def __init__(self, url: str) -> None:
        self._engine = connect(url)
        self._dialect = self._engine.dialect.name
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self._engine.execution_options(**{WRITES: True}), expire_on_commit=False
        )
        # State changes and progress are written lazily: on SQLite they reach the
        # disk with the next durable commit or checkpoint, not before they return.
        # A power cut can lose the last few, which recovery treats like a crash a
        # moment earlier (active jobs go back to the queue); new jobs and erasures
        # are always durable before they return. Each synced commit costs a few ms
        # of disk wait under the write lock, and a job changes state three times.
        self._lazy_writes = sessionmaker(
            self._engine.execution_options(**{WRITES: True, LAZY_SYNC: True}),
            expire_on_commit=False,
        )
        # SQLite has one writer at a time, and a writer that finds the file locked
        # polls with sleeps that grow to 100 ms: under load (request threads adding
        # jobs while the scheduler thread records state changes) that made the tail
        # of submissions slow. Writers of this process take turns on a lock instead,
        # so only writers in other processes meet SQLite's busy wait.
        self._write_turn: AbstractContextManager[object] = (
            threading.Lock() if self._dialect == "sqlite" else nullcontext()
        )
        try:
            migrate(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open_data_dir(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            URL.create("sqlite", database=str(data_dir.resolve() / DB_FILENAME)).render_as_string()
        )

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------
    def add(self, record: JobRecord) -> JobRecord:
        """Store a new job; ``ValueError`` if its id is taken."""
        with self._write() as session:
            (stored,) = _insert(session, [record])
            return stored

    def add_many(self, records: builtins.list[JobRecord]) -> builtins.list[JobRecord]:
        """Store a batch all-or-nothing, so a bulk submission never half-lands."""
        with self._write() as session:
            return _insert(session, records)

    def get(self, job_id: str, with_history: bool = True) -> JobRecord | None:
        with self._read() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            history = histories(session, [job_id]).get(job_id, ()) if with_history else ()
            return from_columns(row, history)

    def delete(self, job_id: str) -> bool:
        """Erase a job and its history (a purge); whether it existed."""
        with self._write() as session:
            session.query(HistoryRow).filter(HistoryRow.job_id == job_id).delete()
            return session.query(JobRow).filter(JobRow.id == job_id).delete() > 0

    def finished_before(self, cutoff: float, limit: int = 500) -> builtins.list[JobRecord]:
        """Finished jobs that ended before ``cutoff``, oldest first (what retention erases)."""
        final = [s.value for s in JobState if s.is_final]
        query = select(JobRow).where(JobRow.status.in_(final), JobRow.finished_at < cutoff)
        with self._read() as session:
            rows = session.scalars(query.order_by(JobRow.finished_at).limit(limit)).all()
            return [from_columns(row) for row in rows]

    def list(
        self, status: JobState | None = None, limit: int = 50, offset: int = 0
    ) -> builtins.list[JobRecord]:
        """A page of jobs, newest submission first, without their histories."""
        query = select(JobRow)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        query = query.order_by(
            JobRow.submitted_at.desc(), JobRow.created_at.desc(), JobRow.id.desc()
        )
        with self._read() as session:
            rows = session.scalars(query.limit(limit).offset(offset)).all()
            return [from_columns(row) for row in rows]

    def count(self, status: JobState | None = None) -> int:
        query = select(func.count()).select_from(JobRow)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        with self._read() as session:
            return int(session.scalar(query) or 0)

    def counts_by_status(self) -> dict[JobState, int]:
        """Every state, with zeros, so a dashboard shows all of them."""
        counts = dict.fromkeys(JobState, 0)
        query = select(JobRow.status, func.count()).group_by(JobRow.status)
        with self._read() as session:
            for status, n in session.execute(query):
                counts[JobState(status)] = int(n)
        return counts

    def counts_by_status_and_model(self) -> dict[tuple[JobState, str], int]:
        """Job counts per (state, model), for metrics; only pairs that occur."""
        query = select(JobRow.status, JobRow.model, func.count()).group_by(
            JobRow.status, JobRow.model
        )
        with self._read() as session:
            return {
                (JobState(status), str(model)): int(n)
                for status, model, n in session.execute(query)
            }

    def pending(self) -> builtins.list[JobRecord]:
        """Jobs waiting to run, with their histories (a restarted service resumes from them)."""
        with self._read() as session:
            rows = session.scalars(
                select(JobRow).where(JobRow.status == JobState.PENDING.value)
            ).all()
            steps = histories(session, [row.id for row in rows])
            return [from_columns(row, steps.get(row.id, ())) for row in rows]

    def transition(
        self,
        job_id: str,
        to_state: JobState,
        now: float,
        reason: str,
        *,
        holder: str | None = None,
        **fields: Any,
    ) -> JobRecord:
        """Move a job to ``to_state`` and set ``fields``, in one transaction.

        Raises ``IllegalTransition`` (nothing written) when the lifecycle does not
        allow the move from the state the job is in at that moment, ``KeyError``
        for an unknown job and ``ValueError`` for a field a transition cannot set.
        With ``holder`` (a scheduler run's lease token) the move is accepted only
        while that run holds the job's lease (``LeaseLost`` otherwise), and a
        final state ends the lease.
        """
        values = _check_fields(fields, TRANSITION_FIELDS, "a transition")
        with self._write(lazy=True) as session:
            row = _locked(session, job_id)
            if row is None:
                raise KeyError(job_id)
            if holder is not None:
                check_holder(session, job_id, holder, ends=to_state.is_final)
            return _apply(session, row, to_state, now, reason, values)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields that do not change the job's state (progress, pending reason, ...).

        ``updated_at`` is set only when given, since there is no clock in here.
        Raises ``KeyError`` for an unknown job and ``ValueError`` for ``status`` or
        any field that only a transition may change.
        """
        values = _check_fields(fields, UPDATE_FIELDS, "update()")
        if not values:
            return
        with self._write(lazy=True) as session:
            row = _locked(session, job_id)
            if row is None:
                raise KeyError(job_id)
            for name, value in values.items():
                setattr(row, name, value)

    def recover(self, now: float) -> tuple[builtins.list[str], builtins.list[int]]:
        """Put jobs a stopped service left loading or processing back in the queue.

        Their attempts stay counted, so a job that keeps killing the service
        still runs out of attempts. Returns the ids moved and the worker pids
        recorded for them, which may still be running and holding device memory.
        """
        active = [JobState.LOADING.value, JobState.PROCESSING.value]
        with self._read() as session:
            ids = session.scalars(
                select(JobRow.id).where(JobRow.status.in_(active)).order_by(JobRow.id)
            ).all()
        moved: builtins.list[str] = []
        pids: builtins.list[int] = []
        for job_id in ids:
            with self._write() as session:
                row = _locked(session, job_id)
                if row is None or row.status not in active:
                    continue  # moved on by someone else since the scan
                pid = row.worker_pid
                reason = f"recovered after vramscribe stopped (attempt {row.attempts} interrupted)"
                cleared = {"worker_pid": None, "device_id": None, "progress_s": 0.0}
                _apply(session, row, JobState.PENDING, now, reason, cleared)
            moved.append(job_id)
            if pid is not None:
                pids.append(pid)
        return moved, pids

    # -- outputs ---------------------------------------------------------------------
    @property
    def ledger(self) -> OutputLedger:
        """Which input each output was written from; transcripts kept after a failed write."""
        return OutputLedger(self._read, self._write)

    # -- footprints ----------------------------------------------------------------
    def has_footprints(self, key: str = FOOTPRINT_KEY) -> bool:
        """Whether a footprint book was ever saved here (under ``key``)."""
        with self._read() as session:
            return session.get(FootprintRow, key) is not None

    def load_footprints(self, key: str = FOOTPRINT_KEY) -> FootprintBook:
        """The learned book, or an empty one (built-in estimates) before the first save.

        ``key`` names the kind of GPU it was learned on (see ``footprint_scope``),
        so what one kind of GPU taught is never applied to another.
        """
        with self._read() as session:
            row = session.get(FootprintRow, key)
            return FootprintBook() if row is None else FootprintBook.from_json(row.book)

    def save_footprints(self, book: FootprintBook, key: str = FOOTPRINT_KEY) -> None:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = insert(FootprintRow).values(key=key, book=book.to_json())
        statement = statement.on_conflict_do_update(
            index_elements=[FootprintRow.key], set_={"book": statement.excluded.book}
        )
        with self._write(lazy=True) as session:
            session.execute(statement)

    # -- plumbing ------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    @contextmanager
    def _write(self, lazy: bool = False) -> Iterator[Session]:
        maker = self._lazy_writes if lazy else self._writes
        with self._write_turn, maker() as session, session.begin():
            yield session


def _check_fields(fields: Mapping[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    if "status" in fields:
        raise ValueError(
            "status changes only through Store.transition(), which records it in the history"
        )
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(
            f"{what} cannot set {', '.join(unknown)}; it can set {', '.join(sorted(allowed))}"
        )
    return to_columns(fields)


def _insert(session: Session, records: Sequence[JobRecord]) -> builtins.list[JobRecord]:
    """Insert new jobs and their histories; the records as stored.

    Plain multi-row inserts of column values, not mapped rows: this runs under
    the store's write lock for every submission, and the mapper's bookkeeping
    was most of its time.
    """
    ids = [r.id for r in records]
    taken = {i for i, n in Counter(ids).items() if n > 1}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        taken.update(session.scalars(select(JobRow.id).where(JobRow.id.in_(chunk))))
    if taken:
        raise ValueError(f"job id(s) already taken: {', '.join(sorted(taken))}")
    rows = [row_values(record) for record in records]
    steps = [
        history_values(record.id, seq, step)
        for record in records
        for seq, step in enumerate(record.history, start=1)
    ]
    try:
        session.execute(insert(table_of(JobRow)), rows)  # parents first: history refers to them
        if steps:
            session.execute(insert(table_of(HistoryRow)), steps)
    except IntegrityError as exc:  # another writer took an id between our check and insert
        raise ValueError("a job id in this batch was taken by another writer") from exc
    return [from_values(row, rec.history) for row, rec in zip(rows, records, strict=True)]


def _locked(session: Session, job_id: str) -> JobRow | None:
    return session.scalars(select(JobRow).where(JobRow.id == job_id).with_for_update()).first()


def _apply(
    session: Session,
    row: JobRow,
    to_state: JobState,
    now: float,
    reason: str,
    values: Mapping[str, Any],
) -> JobRecord:
    """The one place a row changes state: the core decides, then row and history are written.

    Written as plain statements (the history read once, for its last step's
    number and the record returned): the scheduler writes every job's state
    changes, under the store's write lock that submissions wait for.
    """
    before = from_columns(row)
    step = transition(before.to_job(), to_state, now, reason)
    last, history = numbered_history(session, row.id)
    changes = {"status": to_state.value, "updated_at": now, **values}
    session.execute(update(table_of(JobRow)).where(JobRow.id == row.id).values(changes))
    session.execute(insert(table_of(HistoryRow)).values(history_values(row.id, last + 1, step)))
    return from_values({**row_values(before), **changes}, (*history, step))
