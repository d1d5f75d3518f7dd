"""Group commit: concurrent adds share transactions, each caller sees its own outcome."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.unit.test_store import record
from vramscribe.store import Store
from vramscribe.store.group import GroupCommit


def test_concurrent_adds_are_all_stored_and_a_taken_id_fails_alone(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        store.add(record("taken"))
        group = GroupCommit(store)
        results: dict[str, object] = {}
        ids = [f"job{i}" for i in range(40)] + ["taken"]

        def add(job_id: str) -> None:
            try:
                results[job_id] = group.add(record(job_id)).id
            except ValueError as exc:
                results[job_id] = exc

        threads = [threading.Thread(target=add, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert isinstance(results.pop("taken"), ValueError)
        assert results == {i: i for i in ids[:-1]}
        assert store.count() == 41


def test_add_each_reports_every_record(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        store.add(record("b"))
        out = GroupCommit(store).add_each([record("a"), record("b"), record("c")])
        assert [getattr(r, "id", None) for r in out] == ["a", None, "c"]
        assert isinstance(out[1], ValueError)
        assert {r.id for r in store.list()} == {"a", "b", "c"}
