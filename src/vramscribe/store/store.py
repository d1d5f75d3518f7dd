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
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState, Transition, transition
from vramscribe.store.schema import FootprintRow, HistoryRow, JobRow

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DB_FILENAME = "vramscribe.db"
# How long a SQLite writer waits for another one before giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
FOOTPRINT_KEY = "default"
# Any fixed number: concurrent opens of one PostgreSQL database take turns migrating it.
_PG_MIGRATION_LOCK = 0x7672_616D  # "vram"
# Ids per IN (...) list: SQLite caps the number of bound parameters in one statement.
_CHUNK = 500
# Execution option marking the transactions that write (SQLite begins those IMMEDIATE).
_WRITES = "vramscribe_writes"

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


@dataclass(frozen=True)
class JobRecord:
    """Everything the store keeps about one job; ``history`` is filled when asked for.

    ``outputs`` pairs a format with the path its transcript goes to; ``options``
    are the engine options the job runs with. Times are epoch seconds chosen by
    the caller, so tests decide what "now" is.
    """

    id: str
    status: JobState
    model: str
    priority: int
    audio_s: float
    submitted_at: float
    attempts: int
    not_before: float
    estimate_floor_mb: float
    error: str | None
    input_path: str
    input_root: str | None
    outputs: list[tuple[str, str]]
    options: dict[str, Any]
    progress_s: float
    device_id: str | None
    worker_pid: int | None
    pending_reason: str
    created_at: float
    updated_at: float
    finished_at: float | None
    history: tuple[Transition, ...] = ()

    def to_job(self) -> Job:
        """The core's view of this job, so the store can run the core's transition on it.

        The job's model is the memory-profile name the planner estimates with
        (``options["profile"]``, set when a model was resolved), else the name as typed.
        """
        return Job(
            id=self.id,
            model=str(self.options.get("profile") or self.model),
            audio_s=self.audio_s,
            priority=self.priority,
            submitted_at=self.submitted_at,
            compute_type=str(self.options.get("compute_type", "default")),
            batch_size=int(self.options.get("batch_size", 1)),
            state=self.status,
            attempts=self.attempts,
            not_before=self.not_before,
            estimate_floor_mb=self.estimate_floor_mb,
            error=self.error,
            history=list(self.history),
        )


class Store:
    """Jobs, their histories and the footprint book in SQLite or PostgreSQL.

    Safe to share between threads: one engine (a connection pool) and a short
    session per call, so no call sees another's half-finished work.
    """

    def __init__(self, url: str) -> None:
        parsed = _normalise_url(url)
        self._dialect = parsed.get_backend_name()
        if self._dialect == "sqlite":
            self._engine = create_engine(parsed, connect_args={"check_same_thread": False})
            _configure_sqlite(self._engine)
        else:
            self._engine = create_engine(parsed, pool_pre_ping=True)
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self._engine.execution_options(**{_WRITES: True}), expire_on_commit=False
        )
        try:
            self._migrate()
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
            (row,) = _insert(session, [record])
            return _record(row, record.history)

    def add_many(self, records: builtins.list[JobRecord]) -> None:
        """Store a batch all-or-nothing, so a bulk submission never half-lands."""
        with self._write() as session:
            _insert(session, records)

    def get(self, job_id: str, with_history: bool = True) -> JobRecord | None:
        with self._read() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            history = _histories(session, [job_id]).get(job_id, ()) if with_history else ()
            return _record(row, history)

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
            return [_record(row) for row in rows]

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
            histories = _histories(session, [row.id for row in rows])
            return [_record(row, histories.get(row.id, ())) for row in rows]

    def transition(
        self, job_id: str, to_state: JobState, now: float, reason: str, **fields: Any
    ) -> JobRecord:
        """Move a job to ``to_state`` and set ``fields``, in one transaction.

        Raises ``IllegalTransition`` (nothing written) when the lifecycle does not
        allow the move from the state the job is in at that moment, ``KeyError``
        for an unknown job and ``ValueError`` for a field a transition cannot set.
        """
        values = _check_fields(fields, TRANSITION_FIELDS, "a transition")
        with self._write() as session:
            row = _locked(session, job_id)
            if row is None:
                raise KeyError(job_id)
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
        with self._write() as session:
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

    # -- footprints ----------------------------------------------------------------
    def load_footprints(self) -> FootprintBook:
        """The learned book, or an empty one (built-in estimates) before the first save."""
        with self._read() as session:
            row = session.get(FootprintRow, FOOTPRINT_KEY)
            return FootprintBook() if row is None else FootprintBook.from_json(row.book)

    def save_footprints(self, book: FootprintBook) -> None:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = insert(FootprintRow).values(key=FOOTPRINT_KEY, book=book.to_json())
        statement = statement.on_conflict_do_update(
            index_elements=[FootprintRow.key], set_={"book": statement.excluded.book}
        )
        with self._write() as session:
            session.execute(statement)

    # -- plumbing ------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writes() as session, session.begin():
            yield session

    def _migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already."""
        with self._engine.execution_options(**{_WRITES: True}).begin() as connection:
            if self._dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            command.upgrade(_alembic_config(connection), "head")


def _normalise_url(url: str) -> URL:
    """Accept plain ``postgresql://`` URLs too; psycopg 3 is the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; we issue BEGIN ourselves.

    Python's sqlite3 module would otherwise begin transactions only before data
    changes, so a read-then-write (a transition) would not be atomic, and a
    deferred transaction that upgrades to writing can fail at once with "database
    is locked" instead of waiting. Writers therefore begin IMMEDIATE.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _use_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get(_WRITES, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (it stays so), retrying while another connection holds it.

    The switch needs the file to itself and SQLite does not wait for that with
    the busy timeout, so several first opens at once would otherwise fail with
    "database is locked".
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


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
    values = dict(fields)
    if "outputs" in values:
        values["outputs"] = [[str(fmt), str(path)] for fmt, path in values["outputs"]]
    return values


def _insert(session: Session, records: Sequence[JobRecord]) -> builtins.list[JobRow]:
    ids = [r.id for r in records]
    taken = {i for i, n in Counter(ids).items() if n > 1}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        taken.update(session.scalars(select(JobRow.id).where(JobRow.id.in_(chunk))))
    if taken:
        raise ValueError(f"job id(s) already taken: {', '.join(sorted(taken))}")
    rows = [_row(record) for record in records]
    session.add_all(rows)
    try:
        session.flush()  # parents first: history rows refer to them
        for record in records:
            for seq, step in enumerate(record.history, start=1):
                session.add(_history_row(record.id, seq, step))
        session.flush()
    except IntegrityError as exc:  # another writer took an id between our check and insert
        raise ValueError("a job id in this batch was taken by another writer") from exc
    return rows


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
    """The one place a row changes state: the core decides, then row and history are written."""
    step = transition(_record(row).to_job(), to_state, now, reason)
    last = session.scalar(
        select(func.coalesce(func.max(HistoryRow.seq), 0)).where(HistoryRow.job_id == row.id)
    )
    session.add(_history_row(row.id, int(last or 0) + 1, step))
    row.status = to_state.value
    row.updated_at = now
    for name, value in values.items():
        setattr(row, name, value)
    session.flush()
    return _record(row, _histories(session, [row.id]).get(row.id, ()))


def _histories(session: Session, job_ids: Sequence[str]) -> dict[str, tuple[Transition, ...]]:
    found: dict[str, builtins.list[Transition]] = {}
    for start in range(0, len(job_ids), _CHUNK):
        chunk = job_ids[start : start + _CHUNK]
        rows = session.scalars(
            select(HistoryRow)
            .where(HistoryRow.job_id.in_(chunk))
            .order_by(HistoryRow.job_id, HistoryRow.seq)
        )
        for h in rows:
            found.setdefault(h.job_id, []).append(
                Transition(h.time, JobState(h.from_state), JobState(h.to_state), h.reason)
            )
    return {job_id: tuple(steps) for job_id, steps in found.items()}


def _history_row(job_id: str, seq: int, step: Transition) -> HistoryRow:
    return HistoryRow(
        job_id=job_id,
        seq=seq,
        time=step.time,
        from_state=step.from_state.value,
        to_state=step.to_state.value,
        reason=step.reason,
    )


def _row(record: JobRecord) -> JobRow:
    return JobRow(
        id=record.id,
        status=JobState(record.status).value,
        model=record.model,
        priority=record.priority,
        audio_s=float(record.audio_s),
        submitted_at=float(record.submitted_at),
        attempts=record.attempts,
        not_before=float(record.not_before),
        estimate_floor_mb=float(record.estimate_floor_mb),
        error=record.error,
        input_path=record.input_path,
        input_root=record.input_root,
        outputs=[[str(fmt), str(path)] for fmt, path in record.outputs],
        options=dict(record.options),
        progress_s=float(record.progress_s),
        device_id=record.device_id,
        worker_pid=record.worker_pid,
        pending_reason=record.pending_reason,
        created_at=float(record.created_at),
        updated_at=float(record.updated_at),
        finished_at=None if record.finished_at is None else float(record.finished_at),
    )


def _record(row: JobRow, history: tuple[Transition, ...] = ()) -> JobRecord:
    return JobRecord(
        id=row.id,
        status=JobState(row.status),
        model=row.model,
        priority=row.priority,
        audio_s=row.audio_s,
        submitted_at=row.submitted_at,
        attempts=row.attempts,
        not_before=row.not_before,
        estimate_floor_mb=row.estimate_floor_mb,
        error=row.error,
        input_path=row.input_path,
        input_root=row.input_root,
        outputs=[(fmt, path) for fmt, path in row.outputs],
        options=dict(row.options),
        progress_s=row.progress_s,
        device_id=row.device_id,
        worker_pid=row.worker_pid,
        pending_reason=row.pending_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        history=history,
    )
