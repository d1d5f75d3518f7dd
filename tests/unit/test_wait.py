"""The bounded wait for memory other processes hold: a pure timer over plans."""

from vramscribe.core.decisions import Blocked, Plan
from vramscribe.core.jobs import Job
from vramscribe.core.planner import plan
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot
from vramscribe.core.wait import MemoryWaits

WHY = Blocked("cuda:0", 4600, 6000, 8192, 1300, "large-v3")


def blocked(*ids: str) -> Plan:
    return Plan(reasons={i: WHY.reason() for i in ids}, blocked={i: WHY for i in ids})


def ours(*ids: str) -> Plan:
    return Plan(reasons={i: "waiting for memory on cuda:0 (...)" for i in ids})


def test_the_wait_ends_after_the_limit_with_what_would_help() -> None:
    waits = MemoryWaits(300.0)
    assert waits.update(0.0, blocked("a"), {"a"}) == []
    assert waits.update(299.0, blocked("a"), {"a"}) == []
    assert waits.annotate("a", "r", 250.0) == "r (gives up in under a minute)"
    assert waits.annotate("a", "r", 10.0) == "r (gives up in 5 min)"
    [gone] = waits.update(300.0, blocked("a"), {"a"})
    assert gone.job_id == "a"
    assert gone.reason.startswith("gave up after 5 min blocked by other processes' memory")
    for hint in ("smaller model than large-v3", "int8", "another device", "memory limit"):
        assert hint in gone.reason
    assert waits.left_s("a", 300.0) is None


def test_waiting_for_our_own_jobs_stops_the_clock() -> None:
    waits = MemoryWaits(300.0)
    waits.update(0.0, blocked("a"), {"a"})
    waits.update(200.0, ours("a"), {"a"})
    assert waits.left_s("a", 200.0) is None
    waits.update(250.0, blocked("a"), {"a"})
    assert waits.update(500.0, blocked("a"), {"a"}) == []
    assert waits.left_s("a", 500.0) == 50.0


def test_jobs_not_looked_at_keep_counting_and_jobs_gone_are_forgotten() -> None:
    waits = MemoryWaits(300.0)
    waits.update(0.0, blocked("a", "b"), {"a", "b"})
    # Beyond the planner's depth bound: no reason of its own, the clock runs on.
    assert [r.job_id for r in waits.update(301.0, Plan(), {"a"})] == []
    assert waits.left_s("b", 301.0) is None
    assert [r.job_id for r in waits.update(302.0, blocked("a"), {"a"})] == ["a"]


def test_the_planner_tells_others_memory_from_our_own() -> None:
    gpu = DeviceSnapshot("cuda:0", "cuda", 10_000, 3_000)  # 7000 MB held by others
    jobs = [
        Job("big", "large-v3", compute_type="float16"),
        Job("small", "small", compute_type="float16", submitted_at=1.0),
    ]
    p = plan(0.0, jobs, [gpu], [], Settings())
    assert set(p.blocked) == {"big"}
    assert p.blocked["big"].others_mb == 7000
    assert [s.job_id for s in p.starts] == ["small"]
