import random

import pytest

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.planner import Plan, plan
from vramscribe.core.queue import PendingQueue
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

# Estimates with audio_s=0 are the design table's numbers exactly (float16, cuda):
# tiny 600, small 1200, medium 2600, large-v3 4600.
NO_MARGIN = Settings(safety_margin=0.0, max_loads_per_device=8)


def dev(
    id: str = "cuda:0", total: float = 10_000, free: float | None = None, **kw: object
) -> DeviceSnapshot:
    return DeviceSnapshot(id, "cuda", total, total if free is None else free, **kw)  # type: ignore[arg-type]


def job(id: str, model: str = "small", prio: int = 50, at: float = 0.0, **kw: object) -> Job:
    return Job(id, model, priority=prio, submitted_at=at, compute_type="float16", **kw)  # type: ignore[arg-type]


def running(
    job_id: str,
    reserved: float,
    observed: float,
    end: float = 100.0,
    device: str = "cuda:0",
    state: JobState = JobState.PROCESSING,
) -> InstanceView:
    return InstanceView(job_id, device, state, reserved, observed, end)


def started(p: Plan) -> list[str]:
    return [s.job_id for s in p.starts]


def test_admissions_in_one_call_subtract_from_each_other() -> None:
    jobs = [job(str(i), "medium") for i in range(5)]
    p = plan(0, jobs, [dev(free=6000)], [], NO_MARGIN)
    assert started(p) == ["0", "1"]
    assert sum(s.reserved_mb for s in p.starts) <= 6000
    assert "needs 2.5 GiB" in p.reason_for("2") and "0.8 free" in p.reason_for("2")


@pytest.mark.parametrize(
    ("free", "reserved", "observed", "admitted"),
    [
        # A loading instance not yet visible in the reading: its whole reservation counts.
        (10_000, 4600, 0, 1),
        # Half of it observed: the reading shows half, the other half is still outstanding.
        (7_700, 4600, 2300, 1),
        # Fully observed: the reading carries it, nothing outstanding.
        (5_400, 4600, 4600, 1),
        # Without the reservation the same reading would admit two.
        (10_000, 0, 0, 2),
    ],
)
def test_loading_reservation_counts_until_observed(
    free: float, reserved: float, observed: float, admitted: int
) -> None:
    insts = [running("L", reserved, observed, state=JobState.LOADING)] if reserved else []
    jobs = [job("a", "large-v3"), job("b", "large-v3")]
    p = plan(0, jobs, [dev(free=free)], insts, NO_MARGIN)
    assert len(p.starts) == admitted


def test_instance_growing_past_its_reservation_is_not_double_counted() -> None:
    # observed above reserved: outstanding is zero, the reading already has it all.
    p = plan(0, [job("a")], [dev(free=1300)], [running("r", 1000, 3000)], NO_MARGIN)
    assert started(p) == ["a"]


def test_foreign_process_growth_is_respected() -> None:
    # A neighbour took 7 GiB since the last decision: free shrank, nothing fits.
    p = plan(0, [job("a", "large-v3")], [dev(free=3000)], [], NO_MARGIN)
    assert p.starts == []
    assert "blocked by other processes' memory on cuda:0" in p.reason_for("a")


def test_neighbour_peak_is_kept_free() -> None:
    # Neighbour uses 2000 now but used 6000 recently: keep 4000 for it.
    d = dev(free=8000, foreign_peak_mb=6000)
    assert plan(0, [job("a", "large-v3")], [d], [], NO_MARGIN).starts == []
    d = dev(free=8000, foreign_peak_mb=2000)
    assert started(plan(0, [job("a", "large-v3")], [d], [], NO_MARGIN)) == ["a"]


def test_safety_margin_is_a_fraction_of_total() -> None:
    s = Settings(safety_margin=0.1, max_loads_per_device=8)
    assert plan(0, [job("a", "large-v3")], [dev(free=5000)], [], s).starts == []
    assert started(plan(0, [job("a", "large-v3")], [dev(free=5600)], [], s)) == ["a"]


@pytest.mark.parametrize(
    ("settings", "device", "insts", "reason"),
    [
        (
            Settings(safety_margin=0, max_instances_per_device=2),
            dev(),
            [running("x", 600, 600), running("y", 600, 600)],
            "instance cap reached on cuda:0 (2/2)",
        ),
        (
            Settings(safety_margin=0, max_instances_total=1),
            dev(),
            [running("x", 600, 600)],
            "instance cap reached (1/1)",
        ),
        (
            Settings(safety_margin=0, max_loads_per_device=1),
            dev(),
            [running("x", 600, 0, state=JobState.LOADING)],
            "a model is loading on cuda:0",
        ),
        (
            NO_MARGIN,
            dev(cooldown_until=10.0),
            [],
            "cuda:0 is cooling down after running out of memory",
        ),
        (
            NO_MARGIN,
            dev(max_instances=1),
            [running("x", 600, 600)],
            "instance cap reached on cuda:0 (1/1)",
        ),
    ],
)
def test_caps_block_with_a_reason(
    settings: Settings, device: DeviceSnapshot, insts: list[InstanceView], reason: str
) -> None:
    p = plan(5.0, [job("a", "tiny")], [device], insts, settings)
    assert p.starts == []
    assert reason in p.reason_for("a")


def test_load_cap_limits_admissions_per_call() -> None:
    s = Settings(safety_margin=0, max_loads_per_device=2)
    p = plan(0, [job(str(i), "tiny") for i in range(5)], [dev()], [], s)
    assert len(p.starts) == 2
    assert p.reason_for("4") == "waiting: a model is loading on cuda:0"


def test_placement_prefers_fewest_instances_then_best_fit() -> None:
    devices = [dev("cuda:0", free=9000), dev("cuda:1", free=3000), dev("cuda:2", free=2000)]
    insts = [running("x", 500, 500, device="cuda:0")]
    p = plan(0, [job("a", "small")], devices, insts, NO_MARGIN)
    # cuda:1 and cuda:2 both have no instances; cuda:2 leaves less unused.
    assert p.starts[0].device_id == "cuda:2"
    p = plan(0, [job("a", "medium")], devices, insts, NO_MARGIN)
    assert p.starts[0].device_id == "cuda:1"


def test_priority_then_submission_order() -> None:
    jobs = [job("late-normal", at=5), job("early-normal", at=1), job("high", prio=75, at=9)]
    p = plan(10, jobs, [dev(free=1300)], [], NO_MARGIN)
    assert started(p) == ["high"]
    assert "held back" not in p.reason_for("early-normal")


def test_aging_lets_a_low_priority_job_run_eventually() -> None:
    s = Settings(safety_margin=0, aging_s_per_point=10)
    low = job("low", prio=25, at=0)
    for now, winner in [(100, "high"), (499, "high"), (501, "low")]:
        fresh_high = job("high", prio=75, at=now)
        p = plan(now, [fresh_high, low], [dev(free=1300)], [], s)
        assert started(p) == [winner], now


def test_retrying_job_waits_for_its_backoff_with_a_reason() -> None:
    j = job("r", not_before=30.0)
    assert plan(10, [j], [dev()], [], NO_MARGIN).reason_for("r") == "retrying in 20 s"
    assert started(plan(30, [j], [dev()], [], NO_MARGIN)) == ["r"]


def test_oom_floor_raises_the_estimate() -> None:
    j = job("r", "small", estimate_floor_mb=3000)
    assert plan(0, [j], [dev(free=2000)], [], NO_MARGIN).starts == []
    assert plan(0, [j], [dev(free=3000)], [], NO_MARGIN).starts[0].reserved_mb == 3000


def test_job_that_can_never_fit_is_rejected() -> None:
    p = plan(0, [job("big", "large-v3"), job("ok", "tiny")], [dev(total=4000)], [], NO_MARGIN)
    assert [r.job_id for r in p.rejects] == ["big"]
    assert "more than any device can offer" in p.rejects[0].reason
    assert started(p) == ["ok"]


def test_head_job_holds_memory_against_long_backfill() -> None:
    # 3000 free now; a 4600 MB head job fits when the instance ending at t=50 is gone.
    insts = [running("r", 2000, 2000, end=50)]
    head = job("head", "large-v3", at=0)
    long_small = job("long", "small", at=1, audio_s=3600)  # ends far after t=50
    short_small = job("short", "tiny", at=2, audio_s=10)  # ends before t=50
    p = plan(0, [head, long_small, short_small], [dev(free=3000)], insts, NO_MARGIN)
    assert p.hold is not None and p.hold.job_id == "head" and p.hold.start_at == 50
    assert started(p) == ["short"]
    assert p.reason_for("long") == "held back for job head (higher priority) on cuda:0"
    assert "waiting for memory" in p.reason_for("head")


def test_backfill_may_use_memory_the_head_job_will_not_need() -> None:
    # At t=50, 4500 + 2000 free; head needs 4600, leaving 1900 for jobs that run past t=50.
    # A long small job peaks at 1500 MB (1200 grown 25% over an hour of audio).
    insts = [running("r", 2000, 2000, end=50)]
    head = job("head", "large-v3")
    longs = [job(f"long{i}", "small", at=1 + i, audio_s=3600) for i in range(3)]
    p = plan(0, [head, *longs], [dev(free=4500)], insts, NO_MARGIN)
    assert started(p) == ["long0"]
    assert "held back for job head" in p.reason_for("long1")


def test_large_head_job_is_not_starved_by_a_stream_of_small_ones() -> None:
    """Small jobs keep arriving; the large one still starts once memory frees."""
    s = Settings(safety_margin=0, max_loads_per_device=8)
    device_total = 6000.0
    queue = [job("large", "large-v3", at=0.5)]
    live: dict[str, tuple[float, float]] = {}  # job id -> (reserved, ends at)
    large_started_at = None
    for t in range(200):
        now = float(t)
        queue.extend(job(f"s{t}-{k}", "small", at=now, audio_s=640) for k in range(2))
        live = {k: v for k, v in live.items() if v[1] > now}
        insts = [running(k, r, r, end=e) for k, (r, e) in live.items()]
        free = device_total - sum(r for r, _ in live.values())
        p = plan(now, queue, [dev(total=device_total, free=free)], insts, s)
        for st in p.starts:
            live[st.job_id] = (st.reserved_mb, now + 15)  # small jobs run 15 s
            queue = [j for j in queue if j.id != st.job_id]
            if st.job_id == "large":
                large_started_at = now
        if large_started_at is not None:
            break
    assert large_started_at is not None and large_started_at <= 30


def test_every_pending_job_has_a_reason() -> None:
    rng = random.Random(3)
    models = ["tiny", "small", "medium", "large-v3"]
    jobs = [
        job(str(i), rng.choice(models), prio=rng.choice([25, 50, 75]), at=rng.uniform(0, 50))
        for i in range(300)
    ]
    jobs[5].not_before = 1000
    devices = [dev("cuda:0", free=9000), dev("cuda:1", free=2500)]
    insts = [running("x", 500, 0, state=JobState.LOADING, device="cuda:1")]
    for settings in (Settings(), NO_MARGIN, Settings(max_instances_total=2)):
        p = plan(60, jobs, devices, insts, settings)
        begun = set(started(p)) | {r.job_id for r in p.rejects}
        for j in jobs:
            if j.id not in begun:
                assert p.reason_for(j.id), j.id


def test_plan_is_deterministic_and_ignores_input_order() -> None:
    rng = random.Random(5)
    jobs = [
        job(str(i), rng.choice(["tiny", "small", "medium"]), at=rng.uniform(0, 10))
        for i in range(50)
    ]
    devices = [dev("cuda:0", free=7000), dev("cuda:1", free=5000)]
    a = plan(20, jobs, devices, [], NO_MARGIN)
    shuffled = jobs[:]
    rng.shuffle(shuffled)
    b = plan(20, shuffled, devices, [], NO_MARGIN)
    queue = PendingQueue(NO_MARGIN.aging_s_per_point)
    for j in shuffled:
        queue.push(j)
    c = plan(20, queue, devices, [], NO_MARGIN)
    assert a.starts == b.starts == c.starts
    assert a.reasons == b.reasons == c.reasons


def test_learned_footprint_changes_admission() -> None:
    book = FootprintBook()
    book.observe_peak(("medium", "float16", 1, "cuda"), 2000, 0)
    jobs = [job("a", "medium"), job("b", "medium")]
    assert len(plan(0, jobs, [dev(free=4200)], [], NO_MARGIN).starts) == 1
    assert len(plan(0, jobs, [dev(free=4200)], [], NO_MARGIN, book).starts) == 2
