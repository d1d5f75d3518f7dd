"""A job's memory profile and display filename become columns of their own.

Both used to ride in the ``options`` JSON (``options["profile"]``,
``options["filename"]``) next to the engine options. Upgrading moves them out
into ``jobs.profile`` and ``jobs.filename``; a job that never had a profile
gets the model name as typed, which is what the planner estimated it with.
Downgrading puts them back. Columns are only added or dropped (no table copy),
so SQLite's foreign keys from ``job_history`` are never touched.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection, Row

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# Rows read and rewritten per statement, so a large store is never held in memory.
_PAGE = 1000

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.String()),
    sa.column("model", sa.String()),
    sa.column("options", sa.JSON()),
    sa.column("profile", sa.String()),
    sa.column("filename", sa.Text()),
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("profile", sa.String(), nullable=False, server_default=""))
    op.add_column("jobs", sa.Column("filename", sa.Text(), nullable=True))
    _rewrite(op.get_bind(), _moved_out)


def downgrade() -> None:
    _rewrite(op.get_bind(), _moved_back)
    op.drop_column("jobs", "filename")
    op.drop_column("jobs", "profile")


def _moved_out(row: Row[Any]) -> dict[str, Any]:
    options = dict(row.options or {})
    profile = options.pop("profile", None) or row.model
    filename = options.pop("filename", None)
    return {"options": options, "profile": str(profile), "filename": filename}


def _moved_back(row: Row[Any]) -> dict[str, Any]:
    options = dict(row.options or {})
    options["profile"] = row.profile or row.model
    if row.filename:
        options["filename"] = row.filename
    return {"options": options}


def _rewrite(bind: Connection, change: Callable[[Row[Any]], dict[str, Any]]) -> None:
    """Apply ``change`` to every job, a page of rows per statement."""
    for page in _pages(bind):
        # Bound names must differ from the columns they set.
        updates = [
            {"job_id": row.id, **{f"new_{k}": v for k, v in change(row).items()}} for row in page
        ]
        values: dict[str, Any] = {
            name[4:]: sa.bindparam(name) for name in updates[0] if name != "job_id"
        }
        bind.execute(
            _jobs.update().where(_jobs.c.id == sa.bindparam("job_id")).values(**values), updates
        )


def _pages(bind: Connection) -> Iterator[list[Row[Any]]]:
    last: str | None = None
    while True:
        query = sa.select(_jobs).order_by(_jobs.c.id).limit(_PAGE)
        if last is not None:
            query = query.where(_jobs.c.id > last)
        page = list(bind.execute(query).all())
        if not page:
            return
        yield page
        last = page[-1].id
