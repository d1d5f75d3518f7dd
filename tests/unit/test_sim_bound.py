"""The lower bound is a true bound: no policy and no schedule beats it."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.simtools import PlanPolicy, job, world
from vramscribe.core.profiles import PROFILES, max_batch
from vramscribe.core.settings import Settings
from vramscribe.sim.neighbours import ConstantNeighbour, ForeignSpec, SpikeNeighbour
from vramscribe.sim.policies import ALL_POLICIES, make_policy
from vramscribe.sim.scenarios import GIB_MB, Scenario, SimJob
from vramscribe.sim.simulator import Simulation, lower_bound

MODELS = sorted(PROFILES)
NEIGHBOURS = [
    None,
    ConstantNeighbour(3 * GIB_MB),
    ForeignSpec(1 * GIB_MB, 5 * GIB_MB, 60.0),
    SpikeNeighbour(1 * GIB_MB, 6 * GIB_MB, 20.0, 90.0, 30.0),
]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 5))
    jobs = [
        job(
            k,
            model=draw(st.sampled_from(MODELS)),
            audio_s=draw(st.sampled_from([15.0, 45.0, 120.0, 400.0, 1500.0])),
            arrival=draw(st.sampled_from([0.0, 0.0, 5.0, 40.0, 200.0])),
            priority=draw(st.sampled_from([25, 50, 75])),
            startup_s=draw(st.floats(1.0, 5.0)),
            mem_factor=draw(st.floats(0.95, 1.10)),
            compute_type=draw(st.sampled_from(["float16", "int8"])),
        )
        for k in range(n)
    ]
    return world(
        jobs,
        total_gib=draw(st.sampled_from([8.0, 12.0, 24.0, 80.0])),
        foreign=draw(st.sampled_from(NEIGHBOURS)),
        gpus=draw(st.integers(1, 2)),
        s_max=draw(st.sampled_from([None, None, 1.1])),
        speed_factor=draw(st.sampled_from([1.0, 0.35])),
    )


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_no_policy_beats_the_lower_bound(s: Scenario) -> None:
    bound = lower_bound(s, s.jobs())
    assert bound > 0
    for name in ALL_POLICIES:
        r = Simulation(s, make_policy(name)).run(max_time_s=20000.0)
        if r.failed == 0 and r.rejected == 0 and r.unfinished == 0:
            assert r.makespan_s >= bound - 1e-6, (name, r.makespan_s, bound)


def _plans(jobs: list[SimJob]) -> list[list[tuple[str, int, bool]]]:
    """Every order, batch size (1 or the largest the file allows) and start rule."""
    out = []
    for order in itertools.permutations(jobs):
        batches = [sorted({1, max_batch(j.audio_s)}) for j in order]
        for sizes in itertools.product(*batches):
            for waits in itertools.product([False, True], repeat=len(order) - 1):
                after = (False, *waits)
                out.append([(j.id, b, w) for j, b, w in zip(order, sizes, after, strict=True)])
    return out


TINY_CASES = {
    "two tiny files": world([job(0, audio_s=60.0), job(1, audio_s=90.0)], total_gib=24.0),
    "large and small beside a neighbour": world(
        [job(0, model="large-v3", audio_s=600.0), job(1, audio_s=60.0),
         job(2, model="small", audio_s=300.0, arrival=20.0)],
        total_gib=16.0, foreign=ConstantNeighbour(4 * GIB_MB),
    ),
    "two large files on an 8 GiB GPU": world(
        [job(0, model="large-v3", audio_s=400.0),
         job(1, model="large-v3", audio_s=400.0, arrival=10.0, startup_s=4.0)],
        total_gib=8.0,
    ),
    "a T4": world(
        [job(0, model="medium", audio_s=300.0), job(1, model="medium", audio_s=45.0),
         job(2, model="base", audio_s=200.0, arrival=5.0)],
        total_gib=16.0, s_max=1.1, speed_factor=0.35,
    ),
    "one long file, two short ones": world(
        [job(0, model="large-v3", audio_s=3600.0), job(1, model="large-v3", audio_s=30.0),
         job(2, model="large-v3", audio_s=30.0)],
        total_gib=24.0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_the_bound_is_below_the_best_of_every_schedule(case: str) -> None:
    s = TINY_CASES[case]
    bound = lower_bound(s, s.jobs())
    best = float("inf")
    for plan in _plans(s.jobs()):
        sim = Simulation(s, PlanPolicy(plan), Settings(max_attempts=1))
        r = sim.run(max_time_s=20000.0)
        if r.completed == len(plan):
            best = min(best, r.makespan_s)
    assert best < float("inf")
    assert bound <= best + 1e-6
    # ... and not a trivial one: within a factor of the best schedule found.
    assert best / bound < 1.5, (best, bound)
