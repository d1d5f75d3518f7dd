"""Connecting to the store's database: URLs, SQLite's settings and the migrations.

SQLite gets WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE`` for the
transactions that write; PostgreSQL takes an advisory lock while it migrates, so
concurrent first opens take turns. Migrations run on every open and do nothing
when the schema is at the newest revision already.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from vramscribe.errors import UnknownSchema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# How long a SQLite writer waits for another one before giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 48
# Any fixed number: concurrent opens of one PostgreSQL database take turns migrating it.
_PG_MIGRATION_LOCK = 0x7672_616D  # "vram"
# Execution option marking the transactions that write (SQLite begins those IMMEDIATE).
WRITES = "vramscribe_writes"
# Execution option marking writes that need not reach the disk before they return
# (SQLite syncs them with the next durable commit or checkpoint; see Store._write).
LAZY_SYNC = "vramscribe_lazy_sync"


def connect(url: str) -> Engine:
    """An engine for ``url``: SQLite configured as above, PostgreSQL through psycopg 3."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Enough pooled connections for the service's request threads: a connection
        # beyond the pool is opened (and configured) for one call and then closed.
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def normalise_url(url: str) -> URL:
    """Accept plain ``postgresql://`` URLs too; psycopg 3 is the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default); a no-op when it is there."""
    with engine.execution_options(**{WRITES: True}).begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        try:
            command.upgrade(alembic_config(connection), revision)
        except CommandError as exc:
            if "Can't locate revision" not in str(exc):
                raise
            raise UnknownSchema(
                f"the job store at {engine.url.render_as_string(hide_password=True)} was "
                f"written by another version of vramscribe ({exc}); use that version, or "
                "move the store aside to start a new one"
            ) from None


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration, built in code around a connection the caller holds."""
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


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
        options = connection.get_execution_options()
        writes = options.get(WRITES, False)
        if writes:
            sync = "NORMAL" if options.get(LAZY_SYNC, False) else "FULL"
            connection.exec_driver_sql(f"PRAGMA synchronous = {sync}")
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
