"""Rules that keep big jobs from being overtaken forever, and the user's reserve."""

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.planner import plan
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

NO_MARGIN = Settings(safety_margin=0.0, max_loads_per_device=8)


def gpu(total: float = 10_000, free: float | None = None, **kw: object) -> DeviceSnapshot:
    return DeviceSnapshot("cuda:0", "cuda", total, total if free is None else free, **kw)  # type: ignore[arg-type]


def job(id: str, model: str, at: float = 0.0, audio_s: float = 0.0, batch: int = 1) -> Job:
    return Job(id, model, audio_s, submitted_at=at, compute_type="float16", batch_size=batch)


def busy(id: str, mb: float, end: float, batch: int = 1) -> InstanceView:
    return InstanceView(id, "cuda:0", JobState.PROCESSING, mb, mb, end, batch_size=batch)


def test_a_strict_hold_lets_nothing_run_in_the_heads_memory_on_a_promise() -> None:
    insts = [busy("r", 2000, end=300)]
    short = job("short", "tiny", at=200, audio_s=10)  # would end long before t=300
    young = plan(100, [job("head", "large-v3", at=50), short], [gpu(free=3000)], insts, NO_MARGIN)
    assert young.hold is not None and not young.hold.strict
    assert [s.job_id for s in young.starts] == ["short"]
    old = plan(200, [job("head", "large-v3", at=50), short], [gpu(free=3000)], insts, NO_MARGIN)
    assert old.hold is not None and old.hold.strict
    assert old.starts == []
    assert "held back for job head" in old.reason_for("short")


def test_a_job_refused_for_saturation_is_not_overtaken_on_that_device() -> None:
    # Four large-v3 instances run at batch 4 (S_max 2): the device is at its ceiling (4.2),
    # and a fifth at batch 1 lowers it to 4.07; tiny ones (S_max 3) would keep it there.
    insts = [busy(f"r{i}", 4700, end=1000, batch=4) for i in range(4)]
    queue = [job("large", "large-v3", at=0), job("tiny", "tiny", at=1)]
    p = plan(10, queue, [gpu(total=40_000, free=21_200)], insts, NO_MARGIN)
    assert p.starts == []
    assert "saturated" in p.reason_for("large")
    assert "job large starts there first" in p.default_reason


def test_a_cramped_batch_waits_for_room_on_a_busy_device() -> None:
    # A 16-window file beside three instances at batch 4 (the device's ceiling): room for
    # batch 8, which would not add the 50% a cramped batch must; batch 16 keeps the ceiling.
    insts = [busy(f"r{i}", 2000, end=600, batch=4) for i in range(3)]
    cramped = job("long", "large-v3", audio_s=480, batch=0)
    p = plan(0, [cramped], [gpu(total=20_000, free=7000)], insts, NO_MARGIN)
    assert p.starts == [] and "saturated" in p.reason_for("long")
    roomy = plan(0, [cramped], [gpu(total=20_000, free=8500)], insts, NO_MARGIN)
    assert [(s.job_id, s.batch_size) for s in roomy.starts] == [("long", 16)]


def peaked(free: float, reserve: float) -> DeviceSnapshot:
    """A neighbour holding all but ``free`` MB, with a recent peak 500 MB higher."""
    return gpu(free=free, foreign_peak_mb=10_000 - free + 500, reserve_mb=reserve)


def test_a_reserve_is_kept_free_and_overlaps_the_neighbours_headroom() -> None:
    small = [job("s", "small")]  # 1200 MB
    assert plan(0, small, [gpu(free=1500, reserve_mb=400)], [], NO_MARGIN).starts == []
    assert plan(0, small, [gpu(free=1700, reserve_mb=400)], [], NO_MARGIN).starts
    # Headroom 500 and a reserve of 400: the larger is kept free, not their sum.
    assert plan(0, small, [peaked(1650, 400)], [], NO_MARGIN).starts == []
    assert plan(0, small, [peaked(1750, 400)], [], NO_MARGIN).starts
    assert plan(0, small, [peaked(1750, 600)], [], NO_MARGIN).starts == []
    # Too big for the device less the reserve: rejected at once.
    p = plan(0, [job("big", "large-v3")], [gpu(total=5000, reserve_mb=1000)], [], NO_MARGIN)
    assert [r.job_id for r in p.rejects] == ["big"]


def idle(iid: str, model: str, mb: float) -> InstanceView:
    return InstanceView(f"done-{iid}", "cuda:0", JobState.PROCESSING, mb, mb, 0.0, 50, iid,
                        f"{model}/float16", 0.0)  # fmt: skip


def ranked(id: str, model: str, priority: int, audio_s: float = 600.0) -> Job:
    return Job(id, model, audio_s, priority=priority, compute_type="float16", batch_size=1)


def test_a_high_priority_job_waiting_for_our_jobs_holds_back_lower_ones_warm_starts_too() -> None:
    # A large-v3 instance runs; an idle tiny instance sits beside it; 2.2 GB free.
    insts = [busy("r", 4700, end=500), idle("t", "tiny", 600)]
    device = [gpu(total=7500, free=2200)]
    low = ranked("low", "tiny", 25)
    alone = plan(10, [low], device, insts, NO_MARGIN)
    assert [(s.job_id, s.instance_id) for s in alone.starts] == [("low", "t")]
    # An urgent medium job does not fit in what is free: the low job may not
    # take the idle instance (a long file would keep it, and its memory, for minutes).
    urgent = ranked("urgent", "medium", 100)
    p = plan(10, [urgent, low], device, insts, NO_MARGIN)
    assert p.starts == []
    assert p.reason_for("low") == "held back for job urgent (higher priority)"
    # Its memory goes to the urgent job instead: the idle instance is evicted for it.
    assert [(r.instance_id, r.reason) for r in p.releases] == [
        ("t", "evicted for job urgent (medium)")
    ]


def test_jobs_of_the_same_priority_still_backfill_around_a_waiting_one() -> None:
    insts = [busy("r", 4700, end=500)]
    queue = [ranked("big", "medium", 50), ranked("small", "tiny", 50, audio_s=10.0)]
    p = plan(10, queue, [gpu(total=7500, free=2200)], insts, NO_MARGIN)
    assert [s.job_id for s in p.starts] == ["small"]


def test_a_high_priority_job_blocked_by_others_memory_holds_nothing_back() -> None:
    # Another process holds 6 GB of 8: the medium job fits only on the empty device, so
    # it is blocked by others' memory; the low tiny job uses what it cannot.
    device = [gpu(total=8000, free=2000)]
    queue = [ranked("urgent", "medium", 100), ranked("low", "tiny", 25)]
    p = plan(10, queue, device, [], NO_MARGIN)
    assert "urgent" in p.blocked
    assert [s.job_id for s in p.starts] == ["low"]
