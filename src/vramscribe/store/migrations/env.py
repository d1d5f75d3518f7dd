"""Alembic environment: runs inside the connection and transaction the store opened.

The store builds its Alembic configuration in code and hands over a connection
that already holds the lock serialising concurrent upgrades, so there is no
``alembic.ini``, no URL here, and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from vramscribe.store.schema import Base


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "vramscribe's migrations run through vramscribe.store.Store, which supplies "
            "the database connection"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can only change most table properties by copying the table.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("vramscribe's migrations run online only, from vramscribe.store.Store")
run_migrations_online()
