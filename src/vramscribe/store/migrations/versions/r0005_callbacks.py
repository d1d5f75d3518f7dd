"""Completion webhooks: the URL a job's end is posted to, and how its delivery went.

A table of its own (one row per job that asked for a callback), so jobs without
one cost nothing and the jobs table is untouched.

Revision ID: r0005_callbacks
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_callbacks"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_callbacks_job_id_jobs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("callbacks")
