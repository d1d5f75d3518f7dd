import random
import statistics
from typing import Any

import pytest

from tests.simtools import Scripted, job, world
from vramscribe.core.jobs import PRIORITY_NAMES
from vramscribe.devices.fake import FakeDevice
from vramscribe.errors import DeviceOutOfMemory, ScenarioError
from vramscribe.sim.model import Admission
from vramscribe.sim.neighbours import ConstantNeighbour, ForeignSpec, SpikeNeighbour
from vramscribe.sim.scenarios import GIB_MB, load_scenario, parse_scenario
from vramscribe.sim.simulator import Simulation

CLASSES: dict[str, Any] = {
    "name": "classes-test",
    "seed": 7,
    "compute_type": "int8",
    "gpus": [{"total_gib": 24, "foreign": {"shape": "constant", "gib": 3}}],
    "classes": [
        {"count": 5, "model": "large-v3", "compute_type": "float16", "audio": {"fixed": 600},
         "priority": "urgent", "arrival": "all_at_once"},
        {"count": 40, "model": "tiny", "audio": {"uniform": [30, 90]}, "priority": 10,
         "arrival": {"uniform": [100, 200]}},
        {"count": 400, "model": "base", "priority": "low",
         "audio": {"lognormal": {"median": 120, "sigma": 0.7, "min": 15, "max": 600}},
         "arrival": {"poisson": {"rate_per_s": 0.5, "start": 50}}},
    ],
}  # fmt: skip


def test_job_classes_give_their_counts_models_audio_priorities_and_arrivals() -> None:
    s = parse_scenario(CLASSES)
    jobs = s.jobs()
    assert len(jobs) == 445 and len({j.id for j in jobs}) == 445
    large = [j for j in jobs if j.model == "large-v3"]
    tiny = [j for j in jobs if j.model == "tiny"]
    base = [j for j in jobs if j.model == "base"]
    assert len(large) == 5 and len(tiny) == 40 and len(base) == 400
    assert all(j.audio_s == 600 and j.arrival == 0 and j.compute_type == "float16" for j in large)
    assert all(j.priority == PRIORITY_NAMES["urgent"] for j in large)
    assert all(30 <= j.audio_s <= 90 and 100 <= j.arrival <= 200 for j in tiny)
    assert all(j.priority == 10 and j.compute_type == "int8" for j in tiny)
    assert all(15 <= j.audio_s <= 600 and j.priority == PRIORITY_NAMES["low"] for j in base)
    assert statistics.median(j.audio_s for j in base) == pytest.approx(120, rel=0.15)
    times = [j.arrival for j in base]
    assert times == sorted(times) and times[0] >= 50
    gaps = [b - a for a, b in zip([50.0, *times], times, strict=False)]
    assert statistics.fmean(gaps) == pytest.approx(2.0, rel=0.15)  # rate 0.5/s
    assert s.model_mix == pytest.approx({"large-v3": 5 / 445, "tiny": 40 / 445, "base": 400 / 445})
    assert s.jobs() == jobs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "huge"}, "unknown model"),
        ({"audio": {"triangular": 3}}, "unknown audio distribution"),
        ({"audio": {"fixed": 1, "uniform": [1, 2]}}, "audio must be one of"),
        ({"priority": "whenever"}, "priority must be one of"),
        ({"arrival": {"poisson": {"rate_per_s": 0}}}, "rate_per_s > 0"),
        ({"arrival": "tomorrow"}, "arrival must be"),
    ],
)
def test_bad_job_classes_are_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    data = {**CLASSES, "classes": [{**CLASSES["classes"][0], **change}]}
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_neighbour_shapes_are_read_from_the_gpu_entry() -> None:
    def gpu(foreign: dict[str, Any]) -> Any:
        data = {**CLASSES, "gpus": [{"total_gib": 24, "foreign": foreign}]}
        return parse_scenario(data).gpus[0].foreign

    assert gpu({"min_gib": 4, "max_gib": 8}) == ForeignSpec(4 * GIB_MB, 8 * GIB_MB, 60.0)
    assert gpu({"shape": "constant", "mb": 1500}) == ConstantNeighbour(1500.0)
    spike = gpu({"shape": "periodic_spike", "base_mb": 2048, "peak_gib": 10,
                 "duration_s": 30, "period_s": 300, "offset_s": 20})  # fmt: skip
    assert spike == SpikeNeighbour(2048.0, 10 * GIB_MB, 30.0, 300.0, 20.0)
    assert spike.min_mb == 2048.0
    with pytest.raises(ScenarioError, match="duration_s < period_s"):
        gpu({"shape": "periodic_spike", "base_mb": 1, "peak_mb": 2,
             "duration_s": 300, "period_s": 300})  # fmt: skip
    with pytest.raises(ScenarioError, match="unknown neighbour shape"):
        gpu({"shape": "sawtooth"})
    with pytest.raises(ScenarioError, match="needs mb or gib"):
        gpu({"shape": "constant"})


def test_a_periodic_spike_script_goes_up_at_each_start_and_back_after_its_duration() -> None:
    spike = SpikeNeighbour(2000.0, 10000.0, 30.0, 300.0, 120.0)
    steps = spike.script(random.Random(0), 1000.0)
    assert steps == [
        (0.0, 2000.0),
        (120.0, 10000.0), (150.0, 2000.0),
        (420.0, 10000.0), (450.0, 2000.0),
        (720.0, 10000.0), (750.0, 2000.0),
    ]  # fmt: skip
    assert ConstantNeighbour(500.0).script(random.Random(0), 1e6) == [(0.0, 500.0)]


def test_a_spike_that_finds_its_memory_taken_is_a_foreign_oom_and_the_base_comes_back() -> None:
    spike = SpikeNeighbour(2000.0, 10000.0, 30.0, 300.0, 120.0)
    dev = FakeDevice("cuda:0", 16000.0, 0.0, spike.script(random.Random(0), 1000.0))
    dev.advance(0.0)
    dev.allocate(7, 9000.0, 1.0)  # leaves 5000 MB: the spike needs 8000 more
    dev.advance(120.0)
    assert dev.foreign_oom_events == 1 and dev.used_mb == 11000.0
    dev.release(7, 130.0)
    dev.advance(150.0)
    assert dev.used_mb == 2000.0
    dev.advance(420.0)  # the next spike fits
    assert dev.foreign_oom_events == 1 and dev.used_mb == 10000.0
    with pytest.raises(DeviceOutOfMemory):
        dev.allocate(8, 7000.0, 421.0)


def test_spikes_crowded_out_by_our_instances_count_in_the_run() -> None:
    spike = SpikeNeighbour(2 * GIB_MB, 10 * GIB_MB, 30.0, 300.0, 60.0)
    jobs = [job(n, model="large-v3", audio_s=3600.0) for n in range(3)]

    def decide(now: float, sim: Simulation) -> list[Admission]:
        return [Admission(j.id, "cuda:0", 0.0) for j in sim.pending_fifo()]

    r = Simulation(world(jobs, total_gib=20.0, foreign=spike), Scripted(decide)).run()
    # Three large-v3 instances hold ~14 GiB of 20 for 450 s: the spikes at 60 s and 360 s
    # do not fit.
    assert r.foreign_oom_events >= 2 and r.oom_events >= r.foreign_oom_events
    assert r.completed == 3


def test_the_new_builtin_scenarios_have_the_shapes_they_describe() -> None:
    short = load_scenario("short-files").jobs()
    assert len(short) == 400 and all(30 <= j.audio_s <= 90 and j.arrival == 0 for j in short)
    assert {j.model for j in short} == {"tiny", "base", "small"}
    tail = load_scenario("long-tail")
    jobs = tail.jobs()
    assert tail.gpus[0].total_mb == 80 * GIB_MB
    assert (
        sorted((j.model, j.audio_s) for j in jobs if j.model == "large-v3")
        == [("large-v3", 10800.0)] * 10
    )
    assert sum(1 for j in jobs if j.model == "tiny" and j.audio_s == 60) == 190
    many = load_scenario("many-priorities")
    assert many.gpus[0].foreign == SpikeNeighbour(2 * GIB_MB, 10 * GIB_MB, 30.0, 300.0, 120.0)
    mp = many.jobs()
    urgent = [j for j in mp if j.priority == PRIORITY_NAMES["urgent"]]
    assert urgent and all(j.model == "large-v3" for j in urgent)
    low = [j for j in mp if j.priority == PRIORITY_NAMES["low"]]
    assert {j.model for j in low} == {"small", "base"} and len(low) > 20 * len(urgent)
