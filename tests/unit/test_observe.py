"""The policy shell on a fake clock: attribution, release confirmation, neighbour peaks."""

from __future__ import annotations

import pytest

from vramscribe.core.jobs import Job, JobState, transition
from vramscribe.core.observe import DeviceInfo, PolicyShell, Tracked
from vramscribe.core.retry import FailureKind, apply_failure
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import Reading

GPU = DeviceInfo("cuda:0", "cuda")
TOTAL = 10_000.0


def reading(now: float, foreign: float = 0.0, **procs: float) -> dict[str, Reading]:
    """A reading of cuda:0 with ``foreign`` MB of others and ``pNNN=MB`` of ours."""
    ours = {int(k[1:]): v for k, v in procs.items()}
    used = foreign + sum(ours.values())
    return {"cuda:0": Reading(now, TOTAL, TOTAL - used, ours)}


def started(shell: PolicyShell, pid: int, reserved: float, now: float = 0.0) -> Tracked:
    inst = Tracked(f"j{pid}", "cuda:0", pid, reserved, now + 60.0)
    shell.start(inst)
    return inst


# (reading of our pid, loaded for, device attribution) -> observed, outstanding
OBSERVED = [
    ("starting, nothing read yet", None, None, None, 0.0, 1000.0),
    ("loading, part read", 400.0, None, None, 400.0, 600.0),
    ("loaded, all read", 1000.0, 5.0, None, 1000.0, 0.0),
    ("grown past its reservation", 1300.0, 5.0, None, 1300.0, 0.0),
    ("unattributed device, loaded and settled", None, 5.0, False, 1000.0, 0.0),
    ("unattributed device, loaded but not settled", None, 1.0, False, 0.0, 1000.0),
]


@pytest.mark.parametrize(
    ("read", "loaded_for", "attributed", "observed", "outstanding"),
    [c[1:] for c in OBSERVED],
    ids=[c[0] for c in OBSERVED],
)
def test_what_an_instance_is_seen_to_hold(
    read: float | None,
    loaded_for: float | None,
    attributed: bool | None,
    observed: float,
    outstanding: float,
) -> None:
    shell = PolicyShell(settle_s=2.0)
    if attributed is not None:
        shell.attributed["cuda:0"] = attributed
    inst = started(shell, 101, 1000.0)
    now = 10.0
    if loaded_for is not None:
        shell.loaded(inst, now - loaded_for)
    procs = {} if read is None else {"p101": read}
    seen = shell.observe(now, reading(now, **procs), [GPU])
    [view] = seen.views
    assert view.observed_mb == observed and view.outstanding_mb == outstanding
    assert inst.peak_mb == observed


def test_a_device_that_names_none_of_our_processes_is_found_out_once_settled() -> None:
    shell = PolicyShell(settle_s=2.0)
    inst = started(shell, 7, 1000.0)
    shell.loaded(inst, 1.0)
    assert shell.observe(2.0, reading(2.0, foreign=1000.0), [GPU]).unattributed == []
    seen = shell.observe(3.5, reading(3.5, foreign=1000.0), [GPU])
    assert seen.unattributed == ["cuda:0"] and shell.attributed["cuda:0"] is False
    # From now on its reservation stands in for the reading, and is not a neighbour's.
    assert seen.views[0].observed_mb == 1000.0
    assert seen.snapshots[0].foreign_peak_mb == 0.0


def test_release_waits_for_a_reading_without_the_pid_and_kills_again_if_it_lingers() -> None:
    shell = PolicyShell(release_timeout_s=10.0)
    inst = started(shell, 5, 1000.0)
    shell.loaded(inst, 1.0)
    shell.exited(inst, 20.0)
    for now in (21.0, 25.0):
        seen = shell.observe(now, reading(now, p5=1000.0), [GPU])
        assert seen.released == [] and seen.rekill == []
        assert seen.views[0].reserved_mb == 1000.0  # still counted
    seen = shell.observe(30.5, reading(30.5, p5=1000.0), [GPU])
    assert seen.rekill == [inst] and inst.last_kill_at == 30.5
    assert shell.observe(35.0, reading(35.0, p5=1000.0), [GPU]).rekill == []
    seen = shell.observe(36.0, reading(36.0), [GPU])
    assert seen.released == [inst] and seen.views == [] and shell.instances == []


def test_on_an_unattributed_device_release_waits_out_the_settle_time() -> None:
    shell = PolicyShell(settle_s=2.0)
    shell.attributed["cuda:0"] = False
    inst = started(shell, 5, 1000.0)
    shell.exited(inst, 10.0)
    assert shell.observe(11.0, reading(11.0), [GPU]).released == []
    assert shell.observe(12.0, reading(12.0), [GPU]).released == [inst]


def test_the_neighbour_peak_does_not_remember_our_own_loads() -> None:
    """Memory a starting instance holds shows up as "others" until its pid is named."""
    shell = PolicyShell()
    started(shell, 9, 2000.0)
    # The driver shows 1500 MB used that no reading attributes yet: our load, not a neighbour.
    seen = shell.observe(1.0, reading(1.0, foreign=3500.0), [GPU])
    assert seen.snapshots[0].foreign_peak_mb == 1500.0
    seen = shell.observe(2.0, reading(2.0, foreign=2000.0, p9=2000.0), [GPU])
    assert seen.snapshots[0].foreign_peak_mb == 2000.0  # the real neighbour's growth counts
    assert shell.observe(900.0, reading(900.0, foreign=500.0), [GPU]).snapshots[
        0
    ].foreign_peak_mb == pytest.approx(2000.0)


def test_an_unreadable_device_gets_no_snapshot_and_cooldowns_pass_through() -> None:
    shell = PolicyShell()
    shell.cool("cuda:0", 50.0)
    shell.cool("cuda:0", 40.0)  # an earlier end never shortens a cooldown
    seen = shell.observe(1.0, reading(1.0), [GPU], unreadable=["cuda:0"])
    assert seen.snapshots == []
    [snap] = shell.observe(1.0, reading(1.0), [GPU]).snapshots
    assert snap.cooldown_until == 50.0
    cpu = shell.observe(1.0, {"cpu": Reading(1.0, 100.0, 50.0, {})}, [DeviceInfo("cpu", "cpu", 2)])
    assert cpu.snapshots[0].foreign_peak_mb is None and cpu.snapshots[0].max_instances == 2


def _running(attempts: int) -> Job:
    job = Job("j", "small", 60.0)
    job.attempts = attempts
    transition(job, JobState.LOADING, 0.0, "start")
    return job


# kind, attempts so far -> retried, cooldown, error/reason fragment
FAILURES = [
    (FailureKind.OOM, 1, True, True, "oom: x (retry 2/3)"),
    (FailureKind.CRASH, 1, True, False, "crash: x (retry 2/3)"),
    (FailureKind.HANG, 3, False, False, "hang: x (gave up after 3 attempts)"),
    (FailureKind.LOAD_ERROR, 1, False, False, "load_error: x (not retried)"),
    (FailureKind.BAD_INPUT, 1, False, False, "bad_input: x (not retried)"),
    (FailureKind.OOM, 3, False, True, "oom: x (gave up after 3 attempts)"),
]


@pytest.mark.parametrize(("kind", "attempts", "retried", "cools", "reason"), FAILURES)
def test_apply_failure(
    kind: FailureKind, attempts: int, retried: bool, cools: bool, reason: str
) -> None:
    settings = Settings(backoff_base_s=2.0, oom_cooldown_s=5.0)
    job = _running(attempts)
    outcome = apply_failure(job, kind, "x", 1000.0, 100.0, settings)
    assert outcome.retry is retried
    assert outcome.cooldown_until == (105.0 if cools else None)
    assert job.history[-1].reason == reason
    if retried:
        assert job.state is JobState.PENDING and job.error is None
        assert job.not_before == 100.0 + 2.0 * 2 ** (attempts - 1)
    else:
        assert job.state is JobState.FAILED and job.error == reason
    assert job.estimate_floor_mb == (1250.0 if kind is FailureKind.OOM and retried else 0.0)


def test_nothing_is_admitted_before_a_reading_newer_than_the_lag() -> None:
    from vramscribe.core.planner import plan

    shell = PolicyShell()
    lagging = DeviceInfo("cuda:0", "cuda", reading_lag_s=0.5)
    jobs = [Job("a", "small", compute_type="float16")]
    first = shell.observe(100.0, reading(100.0), [lagging])
    assert not first.snapshots[0].fresh
    p = plan(100.0, jobs, first.snapshots, first.views, Settings())
    assert p.starts == [] and "newer than its reading lag" in p.reason_for("a")
    assert not shell.observe(100.4, reading(100.4), [lagging]).snapshots[0].fresh
    later = shell.observe(100.5, reading(100.5, foreign=9_000), [lagging])
    assert later.snapshots[0].fresh
    # Now the neighbour shows: small does not fit beside it.
    assert plan(100.5, jobs, later.snapshots, later.views, Settings()).starts == []
    assert shell.observe(101.0, reading(101.0), [lagging]).snapshots[0].fresh
    assert shell.observe(0.0, reading(0.0), [GPU]).snapshots[0].fresh


def test_a_warm_instance_s_peak_is_its_current_job_s_from_readings_taken_after_it_began() -> None:
    """Readings lag: the first ones after a warm instance takes a small job still show the
    last job's big batch, which must not be learned as the small job's peak."""
    shell = PolicyShell()
    lagged = DeviceInfo("cuda:0", "cuda", reading_lag_s=0.5)
    inst = started(shell, 101, 5000.0)
    shell.loaded(inst, 1.0)
    shell.observe(2.0, reading(2.0, p101=5000.0), [lagged])
    assert inst.peak_mb == 5000.0
    shell.idle(inst, 10.0)
    shell.assign(inst, "j2", 1200.0, 20.0, 50, now=10.0, batch_size=1)
    assert inst.peak_mb == 0.0  # nothing seen of this job yet
    shell.observe(10.2, reading(10.1, p101=5000.0), [lagged])  # taken before it could show
    assert inst.peak_mb == 0.0
    shell.observe(10.8, reading(10.6, p101=1200.0), [lagged])
    assert inst.peak_mb == 1200.0


def test_instances_transcribing_together_are_marked_shared_until_their_next_job() -> None:
    shell = PolicyShell()
    a, b = started(shell, 101, 1000.0), started(shell, 102, 1000.0)
    shell.loaded(a, 1.0)
    shell.observe(2.0, reading(2.0, p101=1000.0, p102=500.0), [GPU])
    assert not a.shared and not b.shared  # b is still loading: a has the device alone
    shell.loaded(b, 3.0)
    shell.observe(4.0, reading(4.0, p101=1000.0, p102=1000.0), [GPU])
    assert a.shared and b.shared
    shell.idle(b, 5.0)
    shell.assign(b, "j3", 1000.0, 20.0, 50, now=6.0, batch_size=4)
    assert not b.shared
    shell.idle(a, 6.5)
    shell.observe(7.0, reading(7.0, p101=1000.0, p102=1000.0), [GPU])
    assert not b.shared  # a is idle: b runs alone
    [view] = [v for v in shell.observe(8.0, reading(8.0, p101=1000.0, p102=1000.0), [GPU]).views
              if v.instance_id == "102"]  # fmt: skip
    assert view.batch_size == 4
