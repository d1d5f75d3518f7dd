"""The job store against real databases: a SQLite file and a PostgreSQL server.

PostgreSQL comes from ``VRAMSCRIBE_TEST_PG_URL`` (``make test`` sets it: its
``scripts/test-deps.sh`` starts a server with ``scripts/ci-postgres.sh``). Each
test gets its own schema there, dropped after. Without the variable the
PostgreSQL cases fail, saying what to run; they never skip.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from tests.databases import PG_ENV, postgres_url
from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import JobState, Transition
from vramscribe.errors import IllegalTransition
from vramscribe.store import JobRecord, Store
from vramscribe.store.schema import Base

P, L, R = JobState.PENDING, JobState.LOADING, JobState.PROCESSING
C, F, X = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store(url) as s:
        yield s


def record(job_id: str, **fields: Any) -> JobRecord:
    base = JobRecord(
        id=job_id,
        status=JobState.PENDING,
        model="tiny.en",
        priority=50,
        audio_s=30.0,
        submitted_at=1000.0,
        attempts=0,
        not_before=0.0,
        estimate_floor_mb=0.0,
        error=None,
        input_path=f"/in/{job_id}.wav",
        input_root=None,
        outputs=[("txt", f"/out/{job_id}.txt"), ("srt", f"/out/{job_id}.srt")],
        options={"compute_type": "int8", "batch_size": 1, "language": None},
        progress_s=0.0,
        device_id=None,
        worker_pid=None,
        pending_reason="queued",
        created_at=1000.0,
        updated_at=1000.0,
        finished_at=None,
    )
    return replace(base, **fields)


def walk(store: Store, job_id: str, *states: JobState, start: float = 2000.0) -> JobRecord:
    """Move a job through ``states`` one second apart; returns the last record."""
    rec = store.get(job_id)
    assert rec is not None
    for i, state in enumerate(states):
        rec = store.transition(job_id, state, start + i, f"to {state.value}")
    return rec


# -- add / get / list / count -----------------------------------------------------------------
def test_add_then_get_returns_every_field(store: Store) -> None:
    rec = record(
        "a",
        priority=75,
        input_root="/in",
        profile="small",
        filename="talk [draft].wav",
        options={"compute_type": "float16", "batch_size": 8, "fake": {"mb": 500}},
        error="old",
        device_id="cuda:1",
        worker_pid=4242,
        finished_at=None,
    )
    assert store.add(rec) == rec
    assert store.get("a") == rec
    assert store.get("a", with_history=False) == rec


def test_get_unknown_job_is_none(store: Store) -> None:
    assert store.get("nope") is None


def test_add_keeps_a_given_history(store: Store) -> None:
    steps = (Transition(5.0, P, L, "x"), Transition(6.0, L, P, "y"))
    store.add(record("a", history=steps))
    got = store.get("a")
    assert got is not None and got.history == steps
    assert store.transition("a", L, 7.0, "again").history[-1] == Transition(7.0, P, L, "again")


def test_add_rejects_a_taken_id(store: Store) -> None:
    store.add(record("a"))
    with pytest.raises(ValueError, match="already taken: a"):
        store.add(record("a", model="other"))
    got = store.get("a")
    assert got is not None and got.model == "tiny.en"


def test_add_many_is_all_or_nothing(store: Store) -> None:
    store.add_many([record(f"j{i}") for i in range(600)])  # more than one IN (...) chunk
    assert store.count() == 600
    with pytest.raises(ValueError, match="j5"):
        store.add_many([record("new1"), record("j5"), record("new2")])
    with pytest.raises(ValueError, match="twice"):
        store.add_many([record("twice"), record("twice")])
    assert store.count() == 600
    assert store.get("new1") is None


def test_list_is_newest_first_with_pages_and_a_status_filter(store: Store) -> None:
    store.add_many([record(f"j{i}", submitted_at=100.0 + i) for i in range(1, 8)])
    walk(store, "j2", L)
    walk(store, "j5", L, R, C)
    assert [r.id for r in store.list(limit=3)] == ["j7", "j6", "j5"]
    assert [r.id for r in store.list(limit=3, offset=3)] == ["j4", "j3", "j2"]
    assert [r.id for r in store.list(limit=3, offset=6)] == ["j1"]
    assert store.list(offset=7) == []
    assert [r.id for r in store.list(P)] == ["j7", "j6", "j4", "j3", "j1"]
    assert [r.id for r in store.list(C)] == ["j5"]
    assert all(r.history == () for r in store.list())


def test_count_and_counts_by_status(store: Store) -> None:
    assert store.counts_by_status() == dict.fromkeys(JobState, 0)
    store.add_many([record(f"j{i}") for i in range(5)])
    walk(store, "j0", L)
    walk(store, "j1", L, R)
    walk(store, "j2", X)
    assert store.count() == 5
    assert store.count(P) == 2
    assert store.count(F) == 0
    assert store.counts_by_status() == {P: 2, L: 1, R: 1, C: 0, F: 0, X: 1}


def test_pending_returns_waiting_jobs_with_their_history(store: Store) -> None:
    store.add_many([record("a"), record("b"), record("c")])
    walk(store, "a", L, P)
    walk(store, "b", L)
    pending = {r.id: r for r in store.pending()}
    assert set(pending) == {"a", "c"}
    assert [(t.from_state, t.to_state) for t in pending["a"].history] == [(P, L), (L, P)]
    assert pending["c"].history == ()


# -- transitions ------------------------------------------------------------------------------
def test_transitions_write_history_in_order_and_set_fields(url: str, store: Store) -> None:
    store.add(record("a"))
    store.transition("a", L, 10.0, "admitted on cuda:0", attempts=1, device_id="cuda:0")
    store.transition("a", R, 10.0, "loaded", worker_pid=77)  # same time: seq keeps the order
    store.transition("a", P, 12.0, "out of memory", error="oom", not_before=20.0)
    store.transition("a", L, 21.0, "admitted again", attempts=2, estimate_floor_mb=900.0)
    store.transition("a", R, 22.0, "loaded")
    done = store.transition(
        "a", C, 30.0, "done", finished_at=30.0, worker_pid=None, progress_s=30.0, error=None
    )
    assert done.status is C
    assert (done.attempts, done.not_before, done.estimate_floor_mb) == (2, 20.0, 900.0)
    assert (done.error, done.worker_pid, done.device_id) == (None, None, "cuda:0")
    assert (done.finished_at, done.updated_at, done.progress_s) == (30.0, 30.0, 30.0)
    assert [(t.time, t.from_state, t.to_state) for t in done.history] == [
        (10.0, P, L),
        (10.0, L, R),
        (12.0, R, P),
        (21.0, P, L),
        (22.0, L, R),
        (30.0, R, C),
    ]
    assert store.get("a") == done
    engine = create_engine(url)
    with engine.connect() as conn:
        seqs = conn.execute(text("SELECT seq FROM job_history ORDER BY id")).scalars().all()
    engine.dispose()
    assert seqs == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("path", "illegal"),
    [((), C), ((), P), ((L,), L), ((L, R), L), ((L, R, C), P), ((F,), L), ((X,), X)],
)
def test_illegal_transition_raises_and_writes_nothing(
    store: Store, path: tuple[JobState, ...], illegal: JobState
) -> None:
    store.add(record("a"))
    before = walk(store, "a", *path)
    with pytest.raises(IllegalTransition, match="cannot go from"):
        store.transition("a", illegal, 9999.0, "nope", error="should not land", attempts=9)
    assert store.get("a") == before


def test_transition_and_update_reject_unknown_and_state_fields(store: Store) -> None:
    store.add(record("a"))
    before = store.get("a")
    with pytest.raises(ValueError, match="bogus"):
        store.transition("a", L, 1.0, "x", bogus=1)
    with pytest.raises(ValueError, match="status"):
        store.transition("a", L, 1.0, "x", status="completed")
    with pytest.raises(ValueError, match="created_at"):
        store.transition("a", L, 1.0, "x", created_at=5.0)
    with pytest.raises(ValueError, match="status"):
        store.update("a", status="completed")
    with pytest.raises(ValueError, match="bogus"):
        store.update("a", bogus=1)
    with pytest.raises(ValueError, match="attempts"):
        store.update("a", attempts=3)
    with pytest.raises(ValueError, match="id"):
        store.update("a", id="b")
    assert store.get("a") == before


def test_unknown_job_in_transition_or_update_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.transition("nope", L, 1.0, "x")
    with pytest.raises(KeyError):
        store.update("nope", progress_s=1.0)


def test_update_sets_fields_without_touching_state_or_history(store: Store) -> None:
    store.add(record("a"))
    walk(store, "a", L)
    store.update(
        "a",
        progress_s=12.5,
        pending_reason="a model is loading on cuda:0",
        worker_pid=99,
        device_id="cuda:1",
        audio_s=61.0,
        priority=100,
        outputs=[("vtt", "/out/a.vtt")],
    )
    got = store.get("a")
    assert got is not None
    assert (got.progress_s, got.pending_reason, got.worker_pid) == (
        12.5,
        "a model is loading on cuda:0",
        99,
    )
    assert (got.device_id, got.audio_s, got.priority) == ("cuda:1", 61.0, 100)
    assert got.outputs == [("vtt", "/out/a.vtt")]
    assert got.status is L and len(got.history) == 1 and got.updated_at == 2000.0
    store.update("a", updated_at=2500.0)
    got = store.get("a")
    assert got is not None and got.updated_at == 2500.0


def test_to_job_carries_state_history_and_engine_options(store: Store) -> None:
    store.add(record("a", options={"compute_type": "int8_float16", "batch_size": 8}))
    rec = walk(store, "a", L, R)
    job = rec.to_job()
    assert (job.id, job.model, job.state, job.audio_s) == ("a", "tiny.en", R, 30.0)
    assert (job.compute_type, job.batch_size) == ("int8_float16", 8)
    assert job.history == list(rec.history)
    assert record("b", options={}).to_job().compute_type == "default"
    assert record("c", profile="large-v3").to_job().model == "large-v3"


# -- recovery ---------------------------------------------------------------------------------
def test_recover_requeues_active_jobs_and_returns_their_pids(url: str, store: Store) -> None:
    store.add_many([record(i) for i in ("idle", "loading", "running", "nopid", "done")])
    store.transition("loading", L, 10.0, "go", attempts=1, worker_pid=11, device_id="cuda:0")
    store.transition("running", L, 10.0, "go", attempts=1, worker_pid=12)
    store.transition("running", P, 11.0, "oom", not_before=15.0)
    store.transition("running", L, 15.0, "go", attempts=2)
    store.transition("running", R, 16.0, "loaded", progress_s=3.0)
    store.transition("nopid", L, 10.0, "go", attempts=1)
    walk(store, "done", L, R, C)
    untouched = {i: store.get(i) for i in ("idle", "done")}

    # The service stops; a new one opens the same database.
    store.close()
    with Store(url) as again:
        moved, pids = again.recover(now=100.0)
        assert sorted(moved) == ["loading", "nopid", "running"]
        assert sorted(pids) == [11, 12]
        for job_id, attempts in (("loading", 1), ("running", 2), ("nopid", 1)):
            got = again.get(job_id)
            assert got is not None
            assert got.status is P and got.attempts == attempts
            assert (got.worker_pid, got.device_id, got.progress_s) == (None, None, 0.0)
            assert got.updated_at == 100.0
            last = got.history[-1]
            assert last.time == 100.0 and last.to_state is P
            assert last.reason == (
                f"recovered after vramscribe stopped (attempt {attempts} interrupted)"
            )
        running = again.get("running")
        assert running is not None and running.not_before == 15.0
        assert [t.to_state for t in running.history] == [L, P, L, R, P]
        for job_id, before in untouched.items():
            assert again.get(job_id) == before
        assert again.recover(now=200.0) == ([], [])


# -- footprints -------------------------------------------------------------------------------
def test_footprints_round_trip(store: Store) -> None:
    empty = store.load_footprints()
    assert empty.learned == {} and empty.speeds == {}
    book = FootprintBook()
    key = ("large-v3", "float16", 1, "cuda")
    book.observe_peak(key, 4800.0, 600.0)
    book.observe_speed(key, 15.0)
    store.save_footprints(book)
    assert store.load_footprints().to_json() == book.to_json()
    book.observe_peak(("tiny", "int8", 1, "cpu"), 300.0, 10.0)
    store.save_footprints(book)
    loaded = store.load_footprints()
    assert loaded.to_json() == book.to_json()
    assert loaded.estimate(key, 600.0) == pytest.approx(book.estimate(key, 600.0))


# -- concurrency ------------------------------------------------------------------------------
def test_concurrent_transitions_on_different_jobs_all_land(store: Store) -> None:
    threads, per_thread = 8, 5
    ids = [f"t{t}-j{j}" for t in range(threads) for j in range(per_thread)]
    store.add_many([record(i) for i in ids])
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for j in range(per_thread):
            job_id = f"t{t}-j{j}"
            store.transition(job_id, L, 1.0, "admitted", attempts=1, worker_pid=t)
            store.update(job_id, progress_s=0.5)
            store.transition(job_id, R, 2.0, "loaded")
            store.transition(job_id, C, 3.0, "done", finished_at=3.0)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, t) for t in range(threads)]:
            future.result()
    assert store.count(C) == len(ids)
    for job_id in ids:
        got = store.get(job_id)
        assert got is not None and [t.to_state for t in got.history] == [L, R, C]


def test_racing_transitions_on_one_job_let_exactly_one_win(store: Store) -> None:
    racers = 6
    store.add_many([record(f"j{n}") for n in range(5)])
    for n in range(5):
        start = threading.Barrier(racers)

        def race(r: int, job_id: str = f"j{n}", start: threading.Barrier = start) -> str:
            start.wait()
            try:
                store.transition(job_id, L, 1.0, f"racer {r}", worker_pid=r)
            except IllegalTransition:
                return "lost"
            return "won"

        with ThreadPoolExecutor(racers) as pool:
            results = list(pool.map(race, range(racers)))
        assert sorted(results) == ["lost"] * (racers - 1) + ["won"]
        got = store.get(f"j{n}")
        assert got is not None and len(got.history) == 1
        assert got.history[0].reason == f"racer {got.worker_pid}"


# -- migrations and setup ---------------------------------------------------------------------
def test_opening_the_same_database_again_migrates_nothing_and_keeps_data(url: str) -> None:
    with Store(url) as first:
        first.add(record("a"))
        walk(first, "a", L)
        with Store(url) as second:  # both open at once
            got = second.get("a")
            assert got is not None and got.status is L
    with Store(url) as third:
        assert third.count() == 1
    engine = create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert len(versions) == 1


def test_concurrent_first_opens_migrate_once(url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store(url), range(4)))
    for s in stores:
        assert s.count() == 0
        s.close()


def test_migrated_schema_matches_the_models(url: str) -> None:
    Store(url).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_open_data_dir_uses_a_wal_sqlite_file(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with Store.open_data_dir(data) as store:
        store.add(record("a"))
    db = data / "vramscribe.db"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT id FROM jobs").fetchall() == [("a",)]
    finally:
        conn.close()


def test_sqlite_connections_enforce_foreign_keys(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'fk.db'}") as store:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), store._engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO job_history (job_id, seq, time, from_state, to_state, reason) "
                "VALUES ('ghost', 1, 0, 'pending', 'loading', 'x')"
            )


def test_plain_postgresql_urls_use_psycopg(pg_url: str) -> None:
    plain = make_url(pg_url).set(drivername="postgresql")
    with Store(plain.render_as_string(hide_password=False)) as store:
        store.add(record("a"))
        assert store.count() == 1


def test_postgres_cases_fail_without_a_server_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PG_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception, match=PG_ENV):
        postgres_url()
