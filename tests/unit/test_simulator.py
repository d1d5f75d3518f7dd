import json
from pathlib import Path

import pytest

from tests.simtools import Scripted, job, world
from vramscribe.core.footprints import builtin_estimate
from vramscribe.core.jobs import PRIORITY_NAMES, JobState
from vramscribe.core.profiles import PROFILES, contention, growth, shared_speeds
from vramscribe.errors import ScenarioError
from vramscribe.sim.model import Admission
from vramscribe.sim.policies import make_policy
from vramscribe.sim.results import starvation_ratio
from vramscribe.sim.scenarios import builtin_names, load_scenario, parse_scenario
from vramscribe.sim.simulator import Simulation, lower_bound

SMALL = {
    "name": "small-test",
    "seed": 3,
    "gpus": [{"total_gib": 12, "lag_s": 0.5, "foreign": {"min_gib": 1, "max_gib": 3}}],
    "initial_jobs": 60,
    "arrivals": 20,
    "arrival_window_s": 600,
    "high_fraction": 0.3,
    "model_mix": {"large-v3": 0.3, "medium": 0.2, "small": 0.2, "tiny": 0.3},
}
LARGE = PROFILES["large-v3"]


def test_builtin_scenarios_match_the_specification() -> None:
    assert {
        "single-24g",
        "single-24g-batch",
        "tight-8g",
        "t4-16g",
        "multi-8x80g",
        "short-files",
        "long-tail",
        "many-priorities",
    } <= set(builtin_names())
    s = load_scenario("single-24g")
    jobs = s.jobs()
    assert len(jobs) == 360 and len(s.gpus) == 1 and s.gpus[0].lag_s == 0.5
    assert sum(1 for j in jobs if j.arrival == 0) == 300
    assert all(10 <= j.audio_s <= 5400 for j in jobs)
    assert len(load_scenario("multi-8x80g").gpus) == 8
    assert load_scenario("t4-16g").gpus[0].s_max == 1.1


def test_scenarios_are_reproducible() -> None:
    s = parse_scenario(SMALL)
    assert s.jobs() == s.jobs()
    a = Simulation(s, make_policy("vramscribe")).run()
    b = Simulation(s, make_policy("vramscribe")).run()
    assert a == b


def test_scenario_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(SMALL))
    assert load_scenario(str(path)).name == "small-test"
    with pytest.raises(ScenarioError, match="no scenario"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="unknown model"):
        parse_scenario({**SMALL, "model_mix": {"huge": 1.0}})
    with pytest.raises(ScenarioError, match="malformed"):
        parse_scenario({"name": "x"})


@pytest.mark.parametrize(
    "policy",
    ["sequential", "static-2", "static-6", "warm-static-3", "batched-1", "seed", "vramscribe"],
)
def test_every_policy_finishes_every_job_and_respects_the_bound(policy: str) -> None:
    s = parse_scenario(SMALL)
    r = Simulation(s, make_policy(policy)).run()
    assert r.completed + r.failed + r.rejected == 80 and r.unfinished == 0
    assert r.makespan_s >= lower_bound(s, s.jobs()) - 1e-6


def test_overbooking_policies_run_out_of_memory_and_vramscribe_does_not() -> None:
    s = parse_scenario(SMALL)
    assert Simulation(s, make_policy("static-8")).run().oom_events > 0
    assert Simulation(s, make_policy("seed")).run().oom_events > 0
    ours = Simulation(s, make_policy("vramscribe")).run()
    assert ours.oom_events == 0 and ours.failed == 0


def test_vramscribe_beats_sequential_and_serves_high_priority_first() -> None:
    s = load_scenario("single-24g")
    seq = Simulation(s, make_policy("sequential")).run()
    ours = Simulation(s, make_policy("vramscribe")).run()
    assert ours.throughput_x > seq.throughput_x
    assert ours.p95_wait_high_s < ours.p95_wait_normal_s


# -- warm instances -------------------------------------------------------------------


def _first_then_warm(now: float, sim: Simulation) -> list[Admission]:
    """Start j0 in a new instance; give every later job the idle instance."""
    pending = [j for j in sim.pending_fifo() if j.not_before <= now]
    if not pending:
        return []
    idle = [i for i in sim.instances() if i.is_idle]
    if idle:
        return [Admission(pending[0].id, idle[0].gpu.id, 0.0, instance_pid=idle[0].pid)]
    if not sim.instances():
        return [Admission(pending[0].id, "cuda:0", 0.0)]
    return []


def test_an_idle_instance_takes_a_job_of_its_model_with_no_start_and_no_load() -> None:
    s = world([job(0, audio_s=72.0), job(1, audio_s=144.0)])
    policy = Scripted(_first_then_warm)
    sim = Simulation(s, policy)
    r = sim.run()
    assert r.completed == 2 and r.model_loads == 1 and r.warm_starts == 1
    first, second = sim.jobs["j00000"], sim.jobs["j00001"]
    done_first = first.history[-1].time
    # Start 2 s, load 0.5 s, then 72 s of audio at 72x: 1 s.
    assert done_first == pytest.approx(2.0 + 0.5 + 1.0)
    # The second job goes PENDING -> PROCESSING the moment the first ends, and takes 2 s.
    assert [t.to_state for t in second.history] == [JobState.PROCESSING, JobState.COMPLETED]
    assert second.history[0].time == pytest.approx(done_first)
    assert r.makespan_s == pytest.approx(done_first + 2.0)
    # The instance served both and is idle, holding its loaded size only.
    [inst] = sim.instances()
    assert inst.phase == "idle" and inst.jobs_served == 2
    loaded = builtin_estimate(("tiny", "float16", 1, "cuda"))
    assert sim.gpus[0].device.used_mb == pytest.approx(loaded)
    assert [f[3] for f in policy.finished] == ["idle", "idle"]


def test_release_frees_an_idle_instance_and_refuses_a_busy_one() -> None:
    s = world([job(0, audio_s=72.0), job(1, audio_s=720.0, arrival=100.0)])
    seen: dict[str, float] = {}

    def decide(now: float, sim: Simulation) -> list[Admission]:
        idle = [i for i in sim.instances() if i.is_idle]
        pending = sim.pending_fifo()
        if idle and not pending and "released" not in seen:
            seen["held"] = sim.gpus[0].device.used_mb
            sim.release(idle[0].pid)
            seen["released"] = sim.gpus[0].device.used_mb
        if pending and not sim.instances():
            return [Admission(pending[0].id, "cuda:0", 0.0)]
        busy = [i for i in sim.instances() if i.phase == "processing"]
        if busy:
            with pytest.raises(ValueError, match="only an idle one"):
                sim.release(busy[0].pid)
        return []

    r = Simulation(s, Scripted(decide)).run()
    assert seen["held"] == pytest.approx(600.0) and seen["released"] == 0.0
    assert r.completed == 2 and r.model_loads == 2 and r.warm_starts == 0


def test_warm_admissions_must_name_an_idle_instance_of_the_same_model() -> None:
    def wrong_model(now: float, sim: Simulation) -> list[Admission]:
        idle = [i for i in sim.instances() if i.is_idle]
        pending = sim.pending_fifo()
        if idle and pending:
            return [Admission(pending[0].id, "cuda:0", 0.0, instance_pid=idle[0].pid)]
        if pending and not sim.instances():
            return [Admission(pending[0].id, "cuda:0", 0.0)]
        return []

    s = world([job(0), job(1, model="base")])
    with pytest.raises(ValueError, match="holds tiny float16"):
        Simulation(s, Scripted(wrong_model)).run()

    def busy_instance(now: float, sim: Simulation) -> list[Admission]:
        if not sim.instances():
            return [Admission("j00000", "cuda:0", 0.0)]
        pid = sim.instances()[0].pid
        return [Admission("j00001", "cuda:0", 0.0, instance_pid=pid)]

    with pytest.raises(ValueError, match="not idle"):
        Simulation(world([job(0), job(1)]), Scripted(busy_instance)).run()


def test_without_reuse_an_instance_exits_with_its_job() -> None:
    policy = Scripted(_first_then_warm, reuse=False)
    sim = Simulation(world([job(0), job(1)]), policy)
    r = sim.run()
    assert r.completed == 2 and r.model_loads == 2 and r.warm_starts == 0
    assert sim.instances() == [] and sim.gpus[0].device.used_mb == 0.0
    assert [f[3] for f in policy.finished] == ["processing", "processing"]


def test_start_and_load_are_separate_phases_visible_to_policies() -> None:
    phases: list[tuple[float, str]] = []

    def decide(now: float, sim: Simulation) -> list[Admission]:
        phases.extend((now, i.phase) for i in sim.instances())
        return [Admission(j.id, "cuda:0", 0.0) for j in sim.pending_fifo()]

    s = world([job(0, model="large-v3", audio_s=160.0)])
    Simulation(s, Scripted(decide, reuse=False)).run()
    loaded = 2.0 + LARGE.load_s
    assert {p for t, p in phases if t < 2.0} == {"starting"}
    assert {p for t, p in phases if 2.0 <= t < loaded} == {"loading"}
    assert {p for t, p in phases if t >= loaded} == {"processing"}


# -- batch sizes and contention -------------------------------------------------------


def test_shared_speeds_batch_gains_and_the_ceiling() -> None:
    assert shared_speeds([3.7], 2.0) == [pytest.approx(3.7)]
    assert shared_speeds([1.0, 1.0, 1.0], 2.0) == [pytest.approx(contention(3, 2.0) / 3)] * 3
    # Two batch-16 processes cannot give more than the ceiling together.
    assert sum(shared_speeds([4.2, 4.2], 3.0)) == pytest.approx(4.2)
    # A batch-1 process beside a batch-8 one shares the GPU by time slices.
    big, small = shared_speeds([3.7, 1.0], 2.0)
    assert big == pytest.approx(3.7 * 2 / 3) and small == pytest.approx(2 / 3)


def _run_alone(batch: int, audio_s: float = 1600.0) -> float:
    def decide(now: float, sim: Simulation) -> list[Admission]:
        return [Admission(j.id, "cuda:0", 0.0, batch_size=batch) for j in sim.pending_fifo()]

    sim = Simulation(world([job(0, model="large-v3", audio_s=audio_s)]), Scripted(decide))
    sim.run()
    [_, loaded, done] = sim.jobs["j00000"].history
    return done.time - loaded.time


def test_a_lone_batch_8_large_v3_runs_3_7_times_its_batch_1_speed() -> None:
    one, eight = _run_alone(1), _run_alone(8)
    assert one == pytest.approx(1600.0 / LARGE.speed_x)
    assert one / eight == pytest.approx(3.7)


def test_batch_memory_is_the_footprint_plus_slots() -> None:
    peaks: list[float] = []

    def decide(now: float, sim: Simulation) -> list[Admission]:
        peaks.append(sim.gpus[0].device.used_mb)
        return [Admission(j.id, "cuda:0", 0.0, batch_size=8) for j in sim.pending_fifo()]

    Simulation(world([job(0, model="large-v3", audio_s=600.0)]), Scripted(decide)).run()
    base = builtin_estimate(("large-v3", "float16", 8, "cuda"))
    assert base == pytest.approx(LARGE.fp16_mb + 1500.0)
    assert max(peaks) == pytest.approx(base * growth(600.0), rel=0.01)


def test_concurrent_batched_instances_share_the_gpu() -> None:
    def decide(now: float, sim: Simulation) -> list[Admission]:
        return [Admission(j.id, "cuda:0", 0.0, batch_size=16) for j in sim.pending_fifo()]

    jobs = [job(n, model="large-v3", audio_s=1600.0) for n in range(2)]
    sim = Simulation(world(jobs, s_max=2.0), Scripted(decide))
    sim.run()
    for j in sim.jobs.values():
        [_, loaded, done] = j.history
        # Each gets half the ceiling (2.1x), not 4.2 x S(2)/2 = 2.8x.
        assert done.time - loaded.time == pytest.approx(1600.0 / (LARGE.speed_x * 2.1), rel=1e-3)


def test_batch_sizes_are_capped_at_the_files_30_s_windows() -> None:
    def decide(now: float, sim: Simulation) -> list[Admission]:
        return [Admission(j.id, "cuda:0", 0.0, batch_size=16) for j in sim.pending_fifo()]

    sim = Simulation(world([job(0, audio_s=45.0), job(1, audio_s=600.0)]), Scripted(decide))
    r = sim.run()
    assert r.batch_clamped == 1
    assert sim.jobs["j00000"].batch_size == 2 and sim.jobs["j00001"].batch_size == 16


# -- what a run reports ---------------------------------------------------------------


def test_max_sim_time_leaves_jobs_unfinished() -> None:
    sim = Simulation(world([job(0), job(1, arrival=500.0)]), Scripted(lambda now, sim: []))
    r = sim.run(max_time_s=100.0)
    assert r.unfinished == 2 and r.completed == 0 and r.makespan_s == pytest.approx(100.0)
    assert not r.ok


def test_an_instance_cap_breach_is_a_policy_error() -> None:
    jobs = [job(n) for n in range(9)]
    with pytest.raises(ValueError, match="instance caps"):
        Simulation(world(jobs), Scripted(lambda now, sim: [
            Admission(j.id, "cuda:0", 0.0) for j in sim.pending_fifo()
        ])).run()  # fmt: skip


def test_starvation_ratio_floors_waits_at_a_minute() -> None:
    assert starvation_ratio([5.0], [0.5]) == 1.0
    assert starvation_ratio([240.0], [10.0]) == 4.0
    assert starvation_ratio([30.0], [120.0]) == 0.5
    assert starvation_ratio([], [10.0]) == 0.0


def test_rejected_and_failed_high_priority_jobs_count_their_wait_until_they_ended() -> None:
    high = PRIORITY_NAMES["high"]
    jobs = [job(0, priority=high), job(1, priority=high, arrival=10.0), job(2)]

    def decide(now: float, sim: Simulation) -> list[Admission]:
        out = []
        for j in sim.pending_fifo():
            if j.id == "j00001" and now >= 50.0:
                sim.reject(j.id, "never fits")
            elif j.id != "j00001" and not sim.instances():
                out.append(Admission(j.id, "cuda:0", 0.0))
        return out

    r = Simulation(world(jobs), Scripted(decide, reuse=False)).run()
    assert r.rejected == 1 and r.failed == 0 and r.completed == 2
    # j0 started at once (wait 0); j1 waited 40 s until it was rejected.
    assert r.p50_wait_high_s == 0.0 and r.p95_wait_high_s == pytest.approx(40.0)
