"""Every path of ``plan`` stops after ``backfill_depth`` jobs it could not start."""

from vramscribe.core.jobs import Job
from vramscribe.core.planner import plan
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot

DEPTH = Settings(backfill_depth=20)


def gpu(
    id: str = "cuda:0", total: float = 24_000, free: float = 24_000, **kw: object
) -> DeviceSnapshot:
    return DeviceSnapshot(id, "cuda", total, free, **kw)  # type: ignore[arg-type]


def jobs(n: int, model: str, **kw: object) -> list[Job]:
    return [
        Job(
            f"{model}{i}",
            model,
            audio_s=60.0 + i,
            submitted_at=float(i),
            compute_type="float16",
            **kw,
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_a_head_that_fits_nowhere_and_holds_nothing_stops_the_scan() -> None:
    # Another process pins all but 3 GiB beyond the margin: large-v3 cannot even be held for.
    used = 24_000 - 2_400 - 3_000
    devices = [gpu(f"cuda:{d}", free=24_000 - used, foreign_peak_mb=used) for d in range(4)]
    queue = jobs(500, "large-v3")
    p = plan(600.0, queue, devices, [], DEPTH)
    assert p.hold is None and not p.starts and not p.rejects
    assert len(p.reasons) == DEPTH.backfill_depth + 1
    assert p.reason_for("large-v30").startswith("blocked by other processes' memory on cuda:")
    assert len(p.blocked) == DEPTH.backfill_depth + 1
    assert p.reason_for("large-v3499") == "queued behind job large-v30 and 20 others"


def test_jobs_behind_the_bound_are_not_looked_at_even_if_they_would_fit() -> None:
    used = 24_000 - 2_400 - 3_000
    devices = [gpu(free=24_000 - used, foreign_peak_mb=used)]
    queue = [*jobs(100, "large-v3"), Job("tiny", "tiny", submitted_at=500.0)]
    assert plan(600.0, queue, devices, [], DEPTH).starts == []
    assert [s.job_id for s in plan(600.0, queue, devices, [], Settings()).starts] == ["tiny"]


def test_retrying_jobs_count_towards_the_bound() -> None:
    queue = jobs(200, "tiny", not_before=10_000.0)
    p = plan(600.0, queue, [gpu()], [], DEPTH)
    assert len(p.reasons) == DEPTH.backfill_depth + 1
    assert p.reason_for("tiny0").startswith("retrying in")
    assert "queued behind job tiny0" in p.reason_for("tiny199")


def test_rejections_count_towards_the_bound() -> None:
    queue = jobs(200, "large-v3")
    p = plan(600.0, queue, [gpu(total=4_000, free=4_000)], [], DEPTH)
    assert len(p.rejects) == DEPTH.backfill_depth + 1


def test_jobs_like_one_that_waits_share_its_reason_and_shorter_ones_are_looked_at() -> None:
    # 4.4 GiB free beyond the margin: medium at batch 1 fits, large-v3 does not.
    devices = [gpu(total=20_000, free=6_500)]
    queue = [*jobs(30, "large-v3"), Job("m", "medium", submitted_at=100.0, compute_type="float16")]
    p = plan(600.0, queue, devices, [], Settings())
    assert [s.job_id for s in p.starts] == ["m"]
    assert all("large-v3" not in s.job_id for s in p.starts)
    assert p.reason_for("large-v329")
