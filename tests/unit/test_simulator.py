import json
from pathlib import Path

import pytest

from vramscribe.errors import ScenarioError
from vramscribe.sim.policies import make_policy
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


def test_builtin_scenarios_match_the_specification() -> None:
    assert {"single-24g", "tight-8g", "t4-16g", "multi-8x80g"} <= set(builtin_names())
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


@pytest.mark.parametrize("policy", ["sequential", "static-2", "static-6", "seed", "vramscribe"])
def test_every_policy_finishes_every_job_and_respects_the_bound(policy: str) -> None:
    s = parse_scenario(SMALL)
    r = Simulation(s, make_policy(policy)).run()
    assert r.completed + r.failed == 80 and r.unfinished == 0
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
