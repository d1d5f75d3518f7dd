"""Migrations upgrade stores written by earlier versions, on SQLite and PostgreSQL.

Each test builds a store at an older revision by running only the migrations up
to it and inserting rows the way that version wrote them, then opens it with
:class:`Store` (which upgrades to the newest revision) and checks every job.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from vramscribe.core.jobs import Job, JobState
from vramscribe.errors import UnknownSchema
from vramscribe.store import JobRecord, Store
from vramscribe.store.database import MIGRATIONS, alembic_config, connect, migrate
from vramscribe.store.records import COLUMNS, JOB_FIELDS
from vramscribe.store.schema import JobRow

OLD_COLUMNS = (
    "id", "status", "model", "priority", "audio_s", "submitted_at", "attempts", "not_before",
    "estimate_floor_mb", "error", "input_path", "input_root", "outputs", "options",
    "progress_s", "device_id", "worker_pid", "pending_reason", "created_at", "updated_at",
    "finished_at",
)  # fmt: skip


def old_row(job_id: str, model: str, options: dict[str, Any], status: str = "pending") -> dict:
    """A ``jobs`` row as revision 0001 stored it: profile and filename inside ``options``."""
    return {
        "id": job_id, "status": status, "model": model, "priority": 50, "audio_s": 12.5,
        "submitted_at": 1000.0, "attempts": 1, "not_before": 0.0, "estimate_floor_mb": 0.0,
        "error": None, "input_path": f"/in/{job_id}.bin", "input_root": None,
        "outputs": json.dumps([["txt", f"/out/{job_id}.txt"]]), "options": json.dumps(options),
        "progress_s": 0.0, "device_id": None, "worker_pid": None, "pending_reason": "queued",
        "created_at": 1000.0, "updated_at": 1001.0, "finished_at": None,
    }  # fmt: skip


def store_at_0001(url: str, rows: list[dict[str, Any]]) -> None:
    engine = connect(url)
    try:
        migrate(engine, "0001")
        with engine.begin() as conn:
            names = ", ".join(OLD_COLUMNS)
            values = ", ".join(f":{c}" for c in OLD_COLUMNS)
            conn.execute(text(f"INSERT INTO jobs ({names}) VALUES ({values})"), rows)
            conn.execute(
                text(
                    "INSERT INTO job_history (job_id, seq, time, from_state, to_state, reason) "
                    "VALUES (:job_id, 1, 1001.0, 'pending', 'loading', 'started')"
                ),
                [{"job_id": row["id"]} for row in rows],
            )
    finally:
        engine.dispose()


def engine_options(fake_mb: int) -> dict[str, Any]:
    return {"engine": "fake", "model": "small", "compute_type": "int8", "batch_size": 1,
            "fake": {"memory_mb": fake_mb}}  # fmt: skip


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [v for (v,) in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_0002_moves_profile_and_filename_out_of_options(url: str) -> None:
    uploaded = {**engine_options(1), "profile": "small", "filename": "talk [1].mp3"}
    typed = {**engine_options(2), "profile": "large-v3"}
    before_profiles = engine_options(3)  # written before profiles were kept: none at all
    store_at_0001(
        url,
        [
            old_row("up", "small", uploaded),
            old_row("typed", "/models/big", typed, status="loading"),
            old_row("bare", "medium", before_profiles),
        ],
    )
    with Store(url) as store:
        got = {rec.id: store.get(rec.id) for rec in store.list(limit=10)}
        assert versions(store._engine) == [ScriptDirectory(str(MIGRATIONS)).get_current_head()]
    assert set(got) == {"up", "typed", "bare"}
    up, typed_rec, bare = got["up"], got["typed"], got["bare"]
    assert up is not None and typed_rec is not None and bare is not None
    assert (up.profile, up.filename, up.display_name) == ("small", "talk [1].mp3", "talk [1].mp3")
    assert (typed_rec.profile, typed_rec.filename) == ("large-v3", None)
    assert typed_rec.display_name == "typed.bin"
    assert (bare.profile, bare.filename) == ("medium", None)
    assert up.options == engine_options(1) and typed_rec.options == engine_options(2)
    assert bare.options == engine_options(3)
    for rec, before in ((up, uploaded), (typed_rec, typed), (bare, before_profiles)):
        assert rec.model == {"up": "small", "typed": "/models/big", "bare": "medium"}[rec.id]
        assert (rec.priority, rec.audio_s, rec.attempts) == (50, 12.5, 1)
        assert rec.outputs == [("txt", f"/out/{rec.id}.txt")]
        assert [(t.from_state, t.to_state, t.reason) for t in rec.history] == [
            (JobState.PENDING, JobState.LOADING, "started")
        ]
        assert rec.to_job().model == (before.get("profile") or rec.model)
    assert typed_rec.status is JobState.LOADING


def test_0002_downgrades_back_into_options(url: str) -> None:
    store_at_0001(url, [old_row("up", "small", {**engine_options(1), "filename": "a.wav"})])
    Store(url).close()
    engine = connect(url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
            (options,) = conn.execute(text("SELECT options FROM jobs")).one()
        assert versions(engine) == ["0001"]
    finally:
        engine.dispose()
    options = json.loads(options) if isinstance(options, str) else options
    assert options == {**engine_options(1), "profile": "small", "filename": "a.wav"}


def test_a_store_upgraded_from_0001_takes_new_jobs_and_transitions(url: str) -> None:
    store_at_0001(url, [old_row("old", "small", {**engine_options(1), "profile": "small"})])
    with Store(url) as store:
        rec = store.transition("old", JobState.PROCESSING, 1002.0, "loaded")
        assert rec.profile == "small" and [t.to_state for t in rec.history][-1] is rec.status
        store.add(JobRecord(**{**_fields(rec), "id": "new", "filename": "b.wav", "history": ()}))
        new = store.get("new")
        assert new is not None and new.filename == "b.wav" and new.profile == "small"


def test_migrations_form_one_chain() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert len(script.get_heads()) == 1
    chain = [rev.revision for rev in script.walk_revisions()]
    assert chain[-1] == "0001" and len(chain) == len(set(chain))
    files = sorted(p.name for p in (MIGRATIONS / "versions").glob("r*.py"))
    assert len(files) == len(chain)


def test_records_and_rows_have_the_same_fields() -> None:
    assert set(COLUMNS) == {c.name for c in JobRow.__table__.columns}
    assert "history" not in COLUMNS
    job_fields = {f.name for f in fields(Job)}
    assert set(JOB_FIELDS.values()) <= job_fields
    assert JOB_FIELDS["status"] == "state" and JOB_FIELDS["profile"] == "model"
    assert "model" not in JOB_FIELDS  # as typed, not the planner's profile


def _fields(rec: JobRecord) -> dict[str, Any]:
    return {f.name: getattr(rec, f.name) for f in fields(rec)}


def test_sqlite_upgrade_keeps_history_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store_at_0001(url, [old_row(f"j{n:04d}", "small", engine_options(n)) for n in range(1500)])
    with Store(url) as store:
        assert store.count() == 1500
        last = store.get("j1499")
        assert last is not None and last.profile == "small" and len(last.history) == 1
        assert last.options == engine_options(1499)


def test_a_store_from_an_unknown_version_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A store stamped by a revision this version does not have (a newer vramscribe, or a
    development build) is not touched; the error says what to do."""
    db = tmp_path / "jobs.db"
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'zz99_from_elsewhere'")
    with pytest.raises(UnknownSchema, match=r"another version of vramscribe.*move the store aside"):
        Store(f"sqlite:///{db}")
