"""The planner's warm-instance and batch-size rules, table by table on a fake clock."""

from __future__ import annotations

import pytest

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.planner import device_throughput, plan
from vramscribe.core.profiles import profile_for
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

NO_MARGIN = Settings(safety_margin=0.0, max_loads_per_device=8)
KEEP = Settings(safety_margin=0.0, max_loads_per_device=8, keep_alive_s=60.0)


def gpu(total: float = 10_000, free: float | None = None, kind: str = "cuda") -> DeviceSnapshot:
    return DeviceSnapshot("cuda:0" if kind == "cuda" else "cpu", kind, total,
                          total if free is None else free)  # fmt: skip


def job(id: str, model: str = "small", audio_s: float = 60.0, batch: int = 1, **kw: object) -> Job:
    return Job(id, model, audio_s, compute_type="float16", batch_size=batch, **kw)  # type: ignore[arg-type]


def idle(iid: str, model: str = "small", since: float = 0.0, held: float = 1200.0,
         device: str = "cuda:0") -> InstanceView:  # fmt: skip
    return InstanceView(f"done-{iid}", device, JobState.PROCESSING, held, held, since, 50, iid,
                        f"{model}/float16", since)  # fmt: skip


def busy(job_id: str, held: float = 1200.0, end: float = 100.0) -> InstanceView:
    return InstanceView(job_id, "cuda:0", JobState.PROCESSING, held, held, end)


def test_a_job_goes_to_an_idle_instance_of_its_model_with_no_new_reservation() -> None:
    # 10 GB device, 1.2 GB held by the idle instance: free reads 8.8 GB.
    p = plan(10.0, [job("a")], [gpu(free=8800)], [idle("1")], NO_MARGIN)
    [start] = p.starts
    assert start.instance_id == "1" and start.reserved_mb == pytest.approx(1200, abs=5)
    # Warm: no process start and no load in its expected end.
    speed = profile_for("small")
    assert speed is not None
    assert start.expected_end == pytest.approx(10.0 + 60.0 / speed.speed_x, abs=0.01)
    assert p.releases == []


def test_an_idle_instance_of_another_model_is_not_used_and_is_released_when_nothing_needs_it() -> (
    None
):
    p = plan(10.0, [job("a", "tiny")], [gpu(free=8800)], [idle("1", "small")], NO_MARGIN)
    assert [s.instance_id for s in p.starts] == [None]
    assert [(r.instance_id, r.reason) for r in p.releases] == [("1", "nothing queued can use it")]


def test_an_idle_instance_that_a_queued_job_can_use_is_kept() -> None:
    # Both jobs are small; one instance is idle, the device has no room for a second.
    p = plan(10.0, [job("a"), job("b")], [gpu(total=1300, free=100)], [idle("1")], NO_MARGIN)
    assert [(s.job_id, s.instance_id) for s in p.starts] == [("a", "1")]
    assert p.releases == []


@pytest.mark.parametrize(("idle_for", "released"), [(59.0, False), (60.0, True)])
def test_a_service_keeps_an_idle_instance_for_its_keep_alive(
    idle_for: float, released: bool
) -> None:
    p = plan(100.0, [], [gpu(free=8800)], [idle("1", since=100.0 - idle_for)], KEEP)
    assert bool(p.releases) is released
    if released:
        assert p.releases[0].reason == "idle for 60 s and nothing queued can use it"


def test_a_job_that_fits_nowhere_evicts_the_longest_idle_instances_it_cannot_use() -> None:
    # 6 GB device: three idle instances (tiny 0.6, base 0.75, small 1.2 GB idle since 5, 1, 3).
    insts = [
        idle("t", "tiny", 5.0, 600),
        idle("b", "base", 1.0, 750),
        idle("s", "small", 3.0, 1200),
    ]
    # large-v3 needs 4.6 GB; 6000 - 2550 = 3450 free: evicting the base (oldest, 0.75 GB) is not
    # enough, base + small (1.95 GB) is.
    jobs = [job("big", "large-v3", audio_s=0.0), job("t2", "tiny", audio_s=0.0)]
    p = plan(10.0, jobs, [gpu(total=6000, free=3450)], insts, KEEP)
    assert sorted(r.instance_id for r in p.releases) == ["b", "s"]
    assert all(r.reason == "evicted for job big (large-v3)" for r in p.releases)
    assert "waiting for idle instances on cuda:0" in p.reason_for("big")
    # The tiny instance is never evicted: the queued tiny job runs on it.
    assert [(s.job_id, s.instance_id) for s in p.starts] == [("t2", "t")]


def test_the_head_job_never_evicts_an_instance_of_its_own_model() -> None:
    p = plan(10.0, [job("big", "large-v3")], [gpu(total=6000, free=1000)],
             [idle("l", "large-v3", 1.0, 5000)], KEEP)  # fmt: skip
    [start] = p.starts
    assert start.instance_id == "l" and p.releases == []


# batch size auto: (device kind, free MB, audio s, queued small jobs after it) -> batch
AUTO = [
    ("long file, memory to spare: the biggest useful batch", "cuda", 10_000, 3600.0, 0, 16),
    ("a 70 s file has three 30 s windows: at most 2", "cuda", 10_000, 70.0, 0, 2),
    ("a 20 s file has one window: 1", "cuda", 10_000, 20.0, 0, 1),
    ("memory for batch 4 only", "cuda", 2400, 3600.0, 0, 4),
    ("on the CPU auto means 1 until measured faster", "cpu", 10_000, 3600.0, 0, 1),
]


@pytest.mark.parametrize(("kind", "free", "audio", "others", "batch"), [c[1:] for c in AUTO],
                         ids=[c[0] for c in AUTO])  # fmt: skip
def test_batch_size_auto(kind: str, free: float, audio: float, others: int, batch: int) -> None:
    jobs = [job("a", audio_s=audio, batch=0)] + [job(f"o{i}", audio_s=10.0) for i in range(others)]
    settings = Settings(safety_margin=0.0, max_loads_per_device=1)
    p = plan(0.0, jobs, [gpu(free=free, kind=kind)], [], settings)
    assert p.starts[0].job_id == "a" and p.starts[0].batch_size == batch


def test_a_batch_is_weighed_against_the_instances_it_keeps_out() -> None:
    """Nine long small files on a 4 GB device: batch 8 for the first (1.2 + 1.5 GB, 3.7x)
    beats three instances at batch 1 (S(3) = 1.8x in all), so the others wait for it."""
    queued = [job(f"o{i}", audio_s=600.0, batch=0) for i in range(8)]
    jobs = [job("a", audio_s=3600.0, batch=0), *queued]
    p = plan(0.0, jobs, [gpu(free=4000)], [], NO_MARGIN)
    assert [(s.job_id, s.batch_size) for s in p.starts] == [("a", 8)]
    assert device_throughput(1, 3.7, 3.0) == pytest.approx(3.7)
    assert device_throughput(3, 3.0, 3.0) == pytest.approx(1.8)
    assert device_throughput(2, 2 * 4.2, 3.0) == pytest.approx(4.2)  # the device's ceiling


def test_an_explicit_batch_size_wins() -> None:
    p = plan(0.0, [job("a", audio_s=3600.0, batch=8)], [gpu()], [], NO_MARGIN)
    assert p.starts[0].batch_size == 8


def test_the_load_cap_counts_model_loads_not_process_starts() -> None:
    starting = InstanceView("s", "cuda:0", JobState.LOADING, 1200, 0, 100, starting=True)
    loading = InstanceView("l", "cuda:0", JobState.LOADING, 1200, 0, 100)
    settings = Settings(safety_margin=0.0, max_loads_per_device=1)
    assert plan(0.0, [job("a")], [gpu()], [starting], settings).starts
    assert not plan(0.0, [job("a")], [gpu()], [loading], settings).starts


def test_idle_memory_nothing_queued_can_use_is_evicted_for_a_bigger_batch() -> None:
    # 8 GB device; an idle small instance nothing queued uses holds 2.5 GB. A 30-minute
    # medium file gets batch 8 (4.6 GB) in the 5.5 GB left, and batch 16 (6.5 GB) with it.
    # Kept for its keep-alive, that instance would squeeze the file into the smaller batch.
    device = [gpu(total=8000, free=5500)]
    p = plan(100.0, [job("m", "medium", 1800.0, batch=0)], device, [idle("s", held=2500)], KEEP)
    assert p.starts == []
    assert [r.instance_id for r in p.releases] == ["s"]
    assert p.releases[0].reason == "evicted for job m (medium): its batch needs the memory"
    assert p.reasons["m"] == "waiting for idle instances on cuda:0 to release their memory"
    # Once the memory is back, the file starts at batch 16.
    [start] = plan(101.0, [job("m", "medium", 1800.0, batch=0)], [gpu(total=8000)], [], KEEP).starts
    assert start.batch_size == 16


def test_an_idle_instance_a_queued_job_can_use_is_not_evicted_for_a_bigger_batch() -> None:
    queue = [job("m", "medium", 1800.0, batch=0, priority=75), job("s", "small")]
    device = [gpu(total=8000, free=5500)]
    p = plan(100.0, queue, device, [idle("i", held=2500)], KEEP)
    assert p.releases == []
    assert [(s.job_id, s.instance_id, s.batch_size) for s in p.starts] == [("m", None, 8)]
    # The small file waits for the medium one: at batch 1 beside a batch-8 file its warm
    # instance would slow the device down (see the test below), and a new one has no room.
    assert p.reasons["s"].startswith("waiting for memory on cuda:0")


@pytest.mark.parametrize(("waiting", "released"), [(False, False), (True, True)])
def test_the_keep_alive_holds_only_while_no_job_waits(waiting: bool, released: bool) -> None:
    # A job waits here to be retried later; nothing can use the idle tiny instance.
    queue = [job("r", "medium", not_before=500.0)] if waiting else []
    p = plan(100.0, queue, [gpu(free=9400)], [idle("t", "tiny", since=99.0, held=600)], KEEP)
    assert [r.instance_id for r in p.releases] == (["t"] if released else [])
    if released:
        assert p.releases[0].reason == "nothing queued can use it"
        assert p.reasons["r"].startswith("retrying in")


def t4(free: float) -> DeviceSnapshot:
    """A 16 GB GPU where a second instance adds 10% at most (a T4: S_max 1.1)."""
    return DeviceSnapshot("cuda:0", "cuda", 16_000, free, s_max=1.1)


def running(batch: int, held: float) -> InstanceView:
    return InstanceView("r", "cuda:0", JobState.PROCESSING, held, held, 500.0, 50, "r",
                        "small/float16", batch_size=batch)  # fmt: skip


@pytest.mark.parametrize(
    ("beside", "free", "outcome"),
    [
        # Memory for batch 4 only, beside a batch-16 file: 0.52 x (4.2 + 2.8) = 3.7 < 4.2.
        (16, 1500.0, "saturated"),
        # The same squeeze beside a batch-1 file: 0.52 x (1 + 2.8) = 2.0, the 50% more a
        # batch kept below its file's own size must bring.
        (1, 1500.0, 4),
        # Room for the file's full batch beside a batch-1 file: 0.52 x (1 + 4.2) = 2.7.
        (1, 4000.0, 16),
    ],
)
def test_a_warm_instance_takes_a_job_only_where_that_adds_throughput(
    beside: int, free: float, outcome: str | int
) -> None:
    """An idle instance squeezed beside a running one would keep that small batch to its
    file's end; on a GPU where concurrency adds little, the file waits for room instead."""
    queue = [job("s", "small", 1800.0, batch=0)]
    p = plan(10.0, queue, [t4(free)], [running(beside, 5000.0), idle("i", held=1200)], NO_MARGIN)
    if outcome == "saturated":
        assert p.starts == [] and "saturated" in p.reasons["s"]
        assert p.releases == []  # the file will need it
    else:
        assert [(s.instance_id, s.batch_size) for s in p.starts] == [("i", outcome)]


@pytest.mark.parametrize(("ends_in", "starts"), [(300.0, False), (2.0, True)])
def test_a_new_instance_is_weighed_against_what_still_runs_once_it_is_loaded(
    ends_in: float, starts: bool
) -> None:
    """A 4-minute file (batch 8 at most) beside a batch-16 one on a T4 would lower the
    device's throughput (0.52 x (4.2 + 3.7) = 4.1 < 4.2), unless that one ends before
    the new instance has started and loaded: then loading it only hides the load."""
    beside = InstanceView("r", "cuda:0", JobState.PROCESSING, 5000, 5000, 10.0 + ends_in,
                          batch_size=16)  # fmt: skip
    p = plan(10.0, [job("m", "medium", 240.0, batch=0)], [t4(10_000)], [beside], NO_MARGIN)
    if starts:
        assert [(s.job_id, s.batch_size) for s in p.starts] == [("m", 8)]
    else:
        assert p.starts == [] and "saturated" in p.reasons["m"]
