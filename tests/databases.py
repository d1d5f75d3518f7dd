"""Databases for the store tests: a SQLite file and a schema of its own on PostgreSQL.

PostgreSQL comes from ``VRAMSCRIBE_TEST_PG_URL`` (``make test`` sets it: its
``scripts/test-deps.sh`` starts a server with ``scripts/ci-postgres.sh``). Each
test gets its own schema there, dropped after. Without the variable the
PostgreSQL cases fail, saying what to run; they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text

PG_ENV = "VRAMSCRIBE_TEST_PG_URL"


def postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    pytest.fail(
        f"{PG_ENV} is not set, so the PostgreSQL store tests cannot run; run them with "
        f'make test, or export {PG_ENV}="$(scripts/test-deps.sh)" first',
        pytrace=False,
    )


@contextmanager
def scratch_schema(admin: Engine) -> Iterator[str]:
    """A URL whose connections see only a fresh schema of their own, dropped after."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
