import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.simtools import job, world
from vramscribe.core.footprints import builtin_estimate
from vramscribe.sim.model import Admission, Policy, SimInstance
from vramscribe.sim.neighbours import ConstantNeighbour
from vramscribe.sim.policies import ALL_POLICIES, BatchedLoop, make_policy
from vramscribe.sim.scenarios import GIB_MB, parse_scenario
from vramscribe.sim.simulator import Simulation

BENCH = Path(__file__).resolve().parents[2] / "bench" / "policies.py"
MIXED = {
    "name": "mixed",
    "seed": 5,
    "gpus": [{"total_gib": 24, "foreign": {"min_gib": 1, "max_gib": 3, "period_s": 60}}],
    "classes": [
        {"count": 6, "model": "large-v3", "audio": {"uniform": [300, 1800]}},
        {"count": 20, "model": "tiny", "audio": {"uniform": [20, 120]},
         "arrival": {"uniform": [0, 300]}},
        {"count": 12, "model": "small", "audio": {"uniform": [30, 600]}, "priority": "high",
         "arrival": {"poisson": {"rate_per_s": 0.05, "start": 10}}},
    ],
}  # fmt: skip


def test_every_policy_is_known_and_named() -> None:
    for name in ALL_POLICIES:
        assert make_policy(name).name == name
    assert {"batched-1", "warm-static-2", "static-3", "sequential", "seed", "vramscribe"} <= set(
        ALL_POLICIES
    )
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("warm-static-x")


@pytest.mark.parametrize("policy", ["batched-1", "warm-static-1", "warm-static-3"])
@pytest.mark.parametrize("gpus", [1, 2])
def test_new_baselines_finish_every_job(policy: str, gpus: int) -> None:
    data = {**MIXED, "gpus": [{**MIXED["gpus"][0], "count": gpus}]}
    s = parse_scenario(data)
    r = Simulation(s, make_policy(policy)).run(max_time_s=86400.0)
    assert r.unfinished == 0 and r.rejected == 0
    assert r.completed + r.failed == 38 and r.completed >= 36
    assert r.warm_starts > 0


class _Watch(BatchedLoop):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        self.seen.append((inst.model, inst.batch_size, len(inst.gpu.instances)))


def test_batched_loop_runs_one_instance_per_gpu_grouped_by_model_at_the_largest_batch() -> None:
    jobs = [
        job(0, model="small", audio_s=600.0),
        job(1, model="large-v3", audio_s=900.0),
        job(2, model="small", audio_s=45.0),
        job(3, model="large-v3", audio_s=1200.0),
        job(4, model="small", audio_s=200.0),
    ]
    # 9 GiB of room beside the neighbour: large-v3 fits at batch 16 (7.8 GB, 8.5 with growth).
    neighbour = ConstantNeighbour(6 * GIB_MB)
    policy = _Watch()
    sim = Simulation(world(jobs, total_gib=15.0, foreign=neighbour), policy)
    r = sim.run()
    assert r.completed == 5 and r.oom_events == 0
    # One load per model group: small, then large-v3.
    assert r.model_loads == 2 and r.warm_starts == 3
    assert [m for m, _, _ in policy.seen] == ["small", "small", "small", "large-v3", "large-v3"]
    assert all(n == 1 for _, _, n in policy.seen)
    batches = {j.id: j.batch_size for j in sim.jobs.values()}
    assert batches == {"j00000": 16, "j00002": 2, "j00004": 4, "j00001": 16, "j00003": 16}


def test_batched_loop_sizes_batches_to_the_memory_it_sees() -> None:
    neighbour = ConstantNeighbour(18.5 * GIB_MB)  # 5.5 GiB left: large-v3 fits at batch 4, not 8
    sim = Simulation(world([job(0, model="large-v3", audio_s=900.0)], total_gib=24.0,
                           foreign=neighbour), make_policy("batched-1"))  # fmt: skip
    r = sim.run()
    assert r.completed == 1 and sim.jobs["j00000"].batch_size == 4
    assert builtin_estimate(("large-v3", "float16", 8, "cuda")) > 5.5 * GIB_MB


class _Counting:
    """Wraps a policy and records the most instances it ever had at once."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name, self.reuse = inner, inner.name, inner.reuse
        self.most = 0

    def admit(self, now: float, sim: Simulation) -> list[Admission]:
        self.most = max(self.most, len(sim.instances()))
        return self.inner.admit(now, sim)

    def on_finished(self, inst: SimInstance, now: float, ok: bool) -> None:
        self.inner.on_finished(inst, now, ok)


def test_warm_pool_keeps_n_workers_and_reloads_only_when_the_model_changes() -> None:
    jobs = [job(n, model="tiny" if n % 4 else "base", audio_s=120.0) for n in range(12)]
    policy = _Counting(make_policy("warm-static-2"))
    r = Simulation(world(jobs, total_gib=24.0), policy).run()
    assert r.completed == 12 and policy.most == 2
    # 3 base jobs and 9 tiny ones on 2 workers: far fewer loads than jobs.
    assert r.model_loads < 8 and r.warm_starts == 12 - r.model_loads


def test_warm_pool_checks_no_memory() -> None:
    jobs = [job(n, model="large-v3", audio_s=600.0) for n in range(6)]
    r = Simulation(world(jobs, total_gib=8.0), make_policy("warm-static-3")).run()
    assert r.oom_events > 0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policies", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_flags_unfinished_jobs_and_ooms_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**MIXED, "gpus": [{"total_gib": 8}]}))
    out = tmp_path / "out.json"
    bench = _bench()
    args = ["--scenario", str(path), "--policy", "sequential", "--policy", "static-4",
            "--policy", "vramscribe"]  # fmt: skip
    rc = bench.main([*args, "--seeds", "1", "--max-sim-time", "300", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "UNFINISHED" in text and "OOM" in text and "FAILED" in text
    assert "mixed, seed 5" in text and "mixed, seed 6" in text
    data = json.loads(out.read_text())["scenarios"]["mixed"]
    assert set(data) == {"5", "6"}
    seq = next(r for r in data["5"] if r["policy"] == "sequential")
    assert seq["unfinished"] > 0 and seq["makespan_s"] == 300.0
    rc = bench.main(["--scenario", str(path), "--policy", "batched-1", "--seeds", "0"])
    assert rc == 0
    # A baseline that does not finish is marked but does not fail the run.
    rc = bench.main([*args[:4], "--seeds", "0", "--max-sim-time", "300"])
    assert rc == 0 and "UNFINISHED" in capsys.readouterr().out
