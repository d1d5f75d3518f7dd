"""Records of written outputs, and transcripts kept when outputs could not be written.

``output_records`` maps each output file to the input it was written from (path,
size, modification time), so "skip existing outputs" trusts only outputs of the
same input as it is now. ``kept_transcripts`` remembers finished transcripts
whose outputs failed to write, so a rerun writes them without transcribing again.
New tables only: nothing existing is rewritten.

Revision ID: r0003_output_records
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "output_records",
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("input_path", sa.Text(), nullable=False),
        sa.Column("input_size", sa.BigInteger(), nullable=False),
        sa.Column("input_mtime", sa.Double(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=True),
        sa.Column("written_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("output_path", name="pk_output_records"),
    )
    op.create_table(
        "kept_transcripts",
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("input_path", sa.Text(), nullable=False),
        sa.Column("input_size", sa.BigInteger(), nullable=False),
        sa.Column("input_mtime", sa.Double(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("result_path", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("kept_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_kept_transcripts"),
    )
    op.create_index("ix_kept_transcripts_input_path", "kept_transcripts", ["input_path"])


def downgrade() -> None:
    op.drop_index("ix_kept_transcripts_input_path", table_name="kept_transcripts")
    op.drop_table("kept_transcripts")
    op.drop_table("output_records")
