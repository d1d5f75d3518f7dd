"""Leases on SQLite and PostgreSQL: one owner per job, and only the owner completes it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_store import record
from vramscribe.cluster.node import SchedulerLock, node_id, scheduler_lock_path
from vramscribe.core.jobs import JobState
from vramscribe.errors import LeaseLost, SchedulerRunning
from vramscribe.store import Store
from vramscribe.store.leases import Holder, Leases

P, L, R, C = JobState.PENDING, JobState.LOADING, JobState.PROCESSING, JobState.COMPLETED


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store(url) as s:
        yield s


def test_claims_take_free_jobs_in_priority_order_and_never_a_held_one(store: Store) -> None:
    for n, prio in enumerate([10, 90, 50]):
        store.add(record(f"j{n}", priority=prio))
    a = Leases(store, Holder("node-a", "run-a", lease_s=30))
    b = Leases(store, Holder("node-b", "run-b", lease_s=30))
    assert [r.id for r in a.claim(100.0, limit=2)] == ["j1", "j2"]
    assert [r.id for r in b.claim(101.0, limit=10)] == ["j0"]
    assert b.claim(102.0, limit=10) == []
    # a's leases lapse without renewal: b may take them
    assert sorted(r.id for r in b.claim(131.0, limit=10)) == ["j1", "j2"]
    assert a.renew(132.0) == set()
    assert b.renew(132.0) == {"j0", "j1", "j2"}


def test_a_job_stored_leased_is_never_claimed_by_a_heartbeat(store: Store) -> None:
    leases = Leases(store, Holder("node-a", "run-a", lease_s=30))
    rec = leases.add(record("new"), 100.0)
    assert rec.id == "new" and leases.holds("new")
    assert leases.claim(100.5, limit=10) == []  # not even by its own run
    assert Leases(store, Holder("node-b", "run-b")).claim(101.0, limit=10) == []


def test_a_late_result_after_the_lease_moved_on_is_refused(store: Store) -> None:
    store.add(record("j"))
    a = Leases(store, Holder("node-a", "run-a", lease_s=10))
    b = Leases(store, Holder("node-b", "run-b", lease_s=10))
    assert [r.id for r in a.claim(100.0, 5)] == ["j"]
    store.transition("j", L, 101.0, "starting", holder="run-a", worker_pid=4242)
    store.transition("j", R, 102.0, "loaded", holder="run-a")
    # node a goes silent; node b finds the lapsed lease and puts the job back
    moved = b.recover(120.0, own_node_dead=False)
    assert moved.moved == ["j"] and moved.own_pids == []  # not b's worker to end
    rec = store.get("j")
    assert rec is not None and rec.status is P
    assert "node node-a stopped renewing its lease" in rec.history[-1].reason
    assert [r.id for r in b.claim(121.0, 5)] == ["j"]
    store.transition("j", L, 122.0, "starting", holder="run-b")
    store.transition("j", R, 123.0, "loaded", holder="run-b")
    with pytest.raises(LeaseLost, match="node-b"):
        store.transition("j", C, 124.0, "transcribed", holder="run-a")
    assert not a.holds("j") and b.holds("j")
    store.transition("j", C, 125.0, "transcribed", holder="run-b")
    done = store.get("j")
    assert done is not None and done.status is C
    assert [h.to_state for h in done.history].count(C) == 1
    assert b.renew(126.0) == set()  # a final job's lease is gone


def test_a_restarted_node_takes_back_its_own_jobs_and_ends_only_its_own_workers(
    store: Store,
) -> None:
    for job_id in ("mine", "theirs", "lapsed"):
        store.add(record(job_id))
    old = Leases(store, Holder("node-a", "run-a-1", lease_s=30))
    other = Leases(store, Holder("node-b", "run-b", lease_s=30))
    assert old.take("mine", 100.0) and other.take("theirs", 100.0)
    gone = Leases(store, Holder("node-c", "run-c", lease_s=5))
    assert gone.take("lapsed", 100.0)
    for job_id, token, pid in (("mine", "run-a-1", 11), ("theirs", "run-b", 22)):
        store.transition(job_id, L, 101.0, "starting", holder=token, worker_pid=pid)
    store.transition("lapsed", L, 101.0, "starting", holder="run-c", worker_pid=33)
    new = Leases(store, Holder("node-a", "run-a-2", lease_s=30))
    got = new.recover(110.0, own_node_dead=True)
    assert sorted(got.moved) == ["lapsed", "mine"]
    assert got.own_pids == [11]  # node c's pid 33 is another host's
    theirs = store.get("theirs")
    assert theirs is not None and theirs.status is L  # its lease is live: untouched
    assert not new.take("theirs", 110.0)
    assert sorted(r.id for r in new.claim(110.0, 10)) == ["lapsed", "mine"]


def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    ids = [f"j{n:03d}" for n in range(60)]
    for job_id in ids:
        store.add(record(job_id))
    got: dict[str, list[str]] = {}

    def claimer(name: str) -> None:
        leases = Leases(store, Holder(f"node-{name}", f"run-{name}", lease_s=60))
        mine: list[str] = []
        while batch := leases.claim(100.0, limit=3):
            mine += [r.id for r in batch]
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [job_id for mine in got.values() for job_id in mine]
    assert sorted(claimed) == ids  # every job once, by exactly one claimer


def test_a_second_scheduler_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = node_id(data)
    assert node_id(data) == node and len(node) == 32
    path = scheduler_lock_path(data, None)
    held = SchedulerLock.acquire(path, node=node, address="http://127.0.0.1:8123")
    with pytest.raises(SchedulerRunning) as refused:
        SchedulerLock.acquire(path, node=node, address="http://127.0.0.1:9999")
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "http://127.0.0.1:8123" in message
    assert "--api-only" in message
    held.release()
    SchedulerLock.acquire(path, node=node, address=None).release()


def test_shared_stores_lock_per_url_in_the_host_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRAMSCRIBE_HOST_DIR", str(tmp_path / "host"))
    one = scheduler_lock_path(tmp_path, "postgresql://db/one")
    two = scheduler_lock_path(tmp_path, "postgresql://db/two")
    assert one.parent == two.parent == tmp_path / "host" and one != two


def test_footprints_are_kept_per_kind_of_gpu(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from vramscribe.core.footprints import FootprintBook
    from vramscribe.devices.cpu import CpuDevice
    from vramscribe.submit.run import footprint_scope

    @dataclass
    class Gpu:  # what NVML reports of a GPU this machine does not have
        id: str
        name: str
        kind: str = "cuda"

    h200 = footprint_scope([Gpu("cuda:0", "NVIDIA H200"), Gpu("cuda:1", "NVIDIA H200")])
    t4 = footprint_scope([Gpu("cuda:0", "Tesla T4")])
    assert h200 == "gpu:NVIDIA H200" and t4 == "gpu:Tesla T4"
    assert footprint_scope([CpuDevice()]) == "default"
    with Store(f"sqlite:///{tmp_path / 'fp.db'}") as store:
        learned = FootprintBook()
        learned.observe_peak(("small", "float16", 1, "cuda"), 2345.0, 60.0)
        store.save_footprints(learned, h200)
        assert store.load_footprints(h200).to_json() == learned.to_json()
        assert store.load_footprints(t4).to_json() == FootprintBook().to_json()
