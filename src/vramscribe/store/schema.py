"""The tables behind the job store, as SQLAlchemy declarative models.

The migrations create the same tables; a test compares a migrated database
with these models so the two cannot drift apart. Constraint and index
names come from one naming convention so they are the same on every backend and
a later migration can refer to them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(row: type[Base]) -> Table:
    """The table a mapped row class stands for (for plain inserts of column values)."""
    return Base.metadata.tables[row.__tablename__]


class JobRow(Base):
    """One job; ``status`` holds a ``JobState`` value and changes only with a history row.

    The columns are :class:`~vramscribe.store.records.JobRecord`'s fields, by name.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String)
    priority: Mapped[int] = mapped_column(Integer)
    audio_s: Mapped[float] = mapped_column(Double)
    submitted_at: Mapped[float] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[float] = mapped_column(Double)
    estimate_floor_mb: Mapped[float] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    input_path: Mapped[str] = mapped_column(Text)
    input_root: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[list[list[str]]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress_s: Mapped[float] = mapped_column(Double)
    device_id: Mapped[str | None] = mapped_column(String)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    pending_reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    profile: Mapped[str] = mapped_column(String, server_default="")
    filename: Mapped[str | None] = mapped_column(Text)

    # The planner reads pending jobs by priority; the dashboard counts and lists by status.
    __table_args__ = (
        Index(None, "status"),
        Index(None, "status", "priority"),
    )


class HistoryRow(Base):
    """One state change; ``seq`` orders a job's changes even when their times are equal."""

    __tablename__ = "job_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Double)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("job_id", "seq"),)


class FootprintRow(Base):
    """A learned footprint book as JSON, keyed so a later version could keep one per host."""

    __tablename__ = "footprints"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    book: Mapped[str] = mapped_column(Text)


class OutputRecordRow(Base):
    """An output file and the input it was written from, as that input was then.

    "Skip existing outputs" trusts an output only when this record names the
    same input at the same size and modification time.
    """

    __tablename__ = "output_records"

    output_path: Mapped[str] = mapped_column(Text, primary_key=True)
    input_path: Mapped[str] = mapped_column(Text)
    input_size: Mapped[int] = mapped_column(BigInteger)
    input_mtime: Mapped[float] = mapped_column(Double)
    job_id: Mapped[str | None] = mapped_column(String)
    written_at: Mapped[float] = mapped_column(Double)


class KeptTranscriptRow(Base):
    """A finished transcript whose outputs could not be written, kept for a rerun.

    ``options`` are the engine options it was made with, so a rerun reuses it
    only for the same input and the same request.
    """

    __tablename__ = "kept_transcripts"

    job_id: Mapped[str] = mapped_column(String, primary_key=True)
    input_path: Mapped[str] = mapped_column(Text)
    input_size: Mapped[int] = mapped_column(BigInteger)
    input_mtime: Mapped[float] = mapped_column(Double)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    result_path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    kept_at: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index(None, "input_path"),)


class CallbackRow(Base):
    """A job's completion webhook: where its end is posted, and how delivery went."""

    __tablename__ = "callbacks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[float | None] = mapped_column(Double)
    last_error: Mapped[str | None] = mapped_column(Text)


class LeaseRow(Base):
    """Which scheduler owns a job: its node, the holder token of that scheduler's run,
    and until when the lease holds unless renewed.

    A job without a live lease belongs to nobody and any scheduler may claim it;
    a state change written with a holder token is refused once the lease moved on.
    """

    __tablename__ = "leases"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[str] = mapped_column(String)
    holder: Mapped[str] = mapped_column(String)
    until: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index(None, "holder"),)
