"""A job as the store keeps it: one dataclass, and the mappings built from its fields.

:class:`JobRecord`'s fields are the ``jobs`` table's columns (``history`` aside: it
lives in ``job_history``). :class:`~vramscribe.store.schema.JobRow` declares the same
columns with their SQL types, and a test holds the two to the same names. Rows are
built from the record's fields and records from the row's, through one table of
conversions (:func:`to_columns`, :func:`from_columns`); the fields a record shares
with the core's :class:`~vramscribe.core.jobs.Job` are mapped once, in
:data:`JOB_FIELDS`, for :meth:`JobRecord.to_job` and :func:`job_values` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Double

from vramscribe.core.jobs import Job, JobState, Transition
from vramscribe.store.schema import JobRow


@dataclass(frozen=True)
class JobRecord:
    """Everything the store keeps about one job; ``history`` is filled when asked for.

    ``model`` is the name as the user typed it (shown back to them); ``profile``
    is the memory-profile name the planner estimates with. ``filename`` is the
    name a client uploaded under, for display only. ``outputs`` pairs a format
    with the path its transcript goes to; ``options`` are the engine options
    the job runs with. Times are epoch seconds chosen by the caller, so tests
    decide what "now" is.
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
    profile: str = ""
    filename: str | None = None
    history: tuple[Transition, ...] = ()

    @property
    def display_name(self) -> str:
        """The name to show for the input: the uploaded name, else the file's own."""
        return self.filename or Path(self.input_path).name

    def to_job(self) -> Job:
        """The core's view of this job, so the store can run the core's transition on it.

        The job's model is the memory-profile name the planner estimates with
        (``profile``, set when a model was resolved), else the name as typed.
        """
        values = {job: getattr(self, name) for name, job in JOB_FIELDS.items()}
        values["model"] = self.profile or self.model
        return Job(
            **values,
            compute_type=str(self.options.get("compute_type", "default")),
            batch_size=int(self.options.get("batch_size", 1)),
            history=list(self.history),
        )


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord) if f.name != "history")
"""The ``jobs`` table's columns, in the record's order."""

# Record field -> Job field, for every field the two hold in common. ``model`` is in
# both with different meanings (as typed / profile), so it maps from ``profile``.
_RENAMED = {"status": "state", "profile": "model"}
_JOB_NAMES = {f.name for f in fields(Job)} - {"model"}
JOB_FIELDS: dict[str, str] = {
    name: _RENAMED.get(name, name) for name in COLUMNS if name in _RENAMED or name in _JOB_NAMES
}


def job_values(job: Job, names: Iterable[str] = JOB_FIELDS) -> dict[str, Any]:
    """The record fields ``names`` (all shared ones by default) as ``job`` holds them."""
    return {name: getattr(job, JOB_FIELDS[name]) for name in names}


def new_record(
    job: Job,
    *,
    model: str,
    input_path: Path,
    outputs: Iterable[tuple[str, Path]],
    options: Mapping[str, Any],
    now: float,
    input_root: Path | None = None,
    filename: str | None = None,
) -> JobRecord:
    """A new record for ``job``, about to be queued: nothing has run yet."""
    return JobRecord(
        **job_values(job),
        model=model,
        input_path=str(input_path),
        input_root=str(input_root) if input_root else None,
        filename=filename or None,
        outputs=[(fmt, str(path)) for fmt, path in outputs],
        options=dict(options),
        progress_s=0.0,
        device_id=None,
        worker_pid=None,
        pending_reason="queued",
        created_at=now,
        updated_at=now,
        finished_at=None,
        history=tuple(job.history),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _same(value: Any) -> Any:
    return value


# Conversions between a record's Python values and a row's column values, per column.
_DOUBLES = {c.name for c in JobRow.__table__.columns if isinstance(c.type, Double)}
_TO_COLUMN: dict[str, Callable[[Any], Any]] = {
    "status": lambda state: JobState(state).value,
    "outputs": lambda pairs: [[str(fmt), str(path)] for fmt, path in pairs],
    "options": dict,
    **dict.fromkeys(_DOUBLES, _float),
}
_FROM_COLUMN: dict[str, Callable[[Any], Any]] = {
    "status": JobState,
    "outputs": lambda pairs: [(fmt, path) for fmt, path in pairs],
    "options": dict,
}


def to_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for record fields (all of them, or the few a change sets)."""
    return {name: _TO_COLUMN.get(name, _same)(value) for name, value in values.items()}


def from_columns(row: JobRow, history: tuple[Transition, ...] = ()) -> JobRecord:
    return from_values({name: getattr(row, name) for name in COLUMNS}, history)


def from_values(columns: Mapping[str, Any], history: tuple[Transition, ...] = ()) -> JobRecord:
    """The record a row with these column values holds."""
    values = {name: _FROM_COLUMN.get(name, _same)(columns[name]) for name in COLUMNS}
    return JobRecord(**values, history=history)


def row_values(record: JobRecord) -> dict[str, Any]:
    """The column values of ``record``'s row."""
    return to_columns({name: getattr(record, name) for name in COLUMNS})
