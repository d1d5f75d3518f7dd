"""``vramscribe simulate``: capacity planning for a real folder of audio."""

from __future__ import annotations

import random
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vramscribe.console import error, say
from vramscribe.core.profiles import profile_for
from vramscribe.core.settings import Settings
from vramscribe.errors import BadInput, InvalidLimit, ScenarioError
from vramscribe.sim.policies import make_policy
from vramscribe.sim.scenarios import GIB_MB, GpuSpec, Scenario, SimJob, load_scenario
from vramscribe.sim.simulator import Simulation

POLICIES = [
    "sequential",
    "static-2",
    "static-4",
    "warm-static-2",
    "batched-1",
    "seed",
    "vramscribe",
]
# Simulated time after which a run stops and its jobs not done count as unfinished.
MAX_SIM_TIME_S = 7 * 86400.0


def parse_gpus(spec: str) -> tuple[GpuSpec, ...]:
    """``2x24g`` or ``8x80g,1x16g`` -> GPU specs; ``4x(2x24g)``: four machines of two GPUs
    each, named ``node0/cuda:0`` ... (the head plans every machine over one global queue,
    so a cluster plans like its GPUs together)."""
    nodes = re.fullmatch(r"\s*(\d+)\s*x\s*\((.+)\)\s*", spec)
    if nodes:
        per_node = _parse_flat(nodes.group(2))
        return tuple(
            GpuSpec(f"node{n}/{gpu.id}", gpu.total_mb)
            for n in range(int(nodes.group(1)))
            for gpu in per_node
        )
    return _parse_flat(spec)


def _parse_flat(spec: str) -> tuple[GpuSpec, ...]:
    gpus: list[GpuSpec] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*g(?:ib)?\s*", part, re.IGNORECASE)
        if not m:
            raise ScenarioError(f"cannot read --gpus {part!r}; write e.g. 2x24g or 8x80g")
        for _ in range(int(m.group(1))):
            gpus.append(GpuSpec(f"cuda:{len(gpus)}", float(m.group(2)) * GIB_MB))
    return tuple(gpus)


def folder_scenario(folder: Path, gpus: tuple[GpuSpec, ...], model: str) -> Scenario:
    from vramscribe.audio import discover, probe_duration

    if profile_for(model) is None:
        raise ScenarioError(f"no memory profile for model {model!r}")
    found = discover([folder])
    rng = random.Random(0)
    jobs = []
    for n, (file, _) in enumerate(found.files):
        try:
            length = probe_duration(file)
        except BadInput:
            continue
        jobs.append(SimJob(f"j{n:05d}", model, length, 50, 0.0, rng.uniform(1, 5), 1.0))
    if not jobs:
        raise ScenarioError(f"no readable audio under {folder}")
    return Scenario(
        name=str(folder),
        seed=0,
        gpus=gpus,
        initial_jobs=len(jobs),
        arrivals=0,
        arrival_window_s=0.0,
        high_fraction=0.0,
        model_mix={model: 1.0},
        fixed_jobs=tuple(jobs),
    )


def simulate_command(
    source: str,
    gpus_spec: str,
    model: str,
    console: Console,
    settings: Settings | None = None,
    max_sim_time_s: float = MAX_SIM_TIME_S,
) -> int:
    """Every policy on the folder or scenario; 1 if vramscribe leaves a job unfinished.

    ``settings.limits`` apply to vramscribe's policy (the baselines know no limits)."""
    settings = settings or Settings()
    limits = settings.limits
    try:
        path = Path(source)
        if path.is_dir():
            scenario = folder_scenario(path, parse_gpus(gpus_spec), model)
        else:
            scenario = load_scenario(source)
        limits.check([g.id for g in scenario.gpus], {g.id: g.total_mb for g in scenario.gpus})
    except (ScenarioError, InvalidLimit) as exc:
        error(str(exc), console)
        return 2
    jobs = scenario.jobs()
    audio = sum(j.audio_s for j in jobs)
    say(
        f"{len(jobs)} files, {audio / 3600:.2f} h of audio on "
        f"{len(scenario.gpus)} GPU(s); model mix {scenario.model_mix}",
        console,
    )
    for gpu in scenario.gpus:
        words = limits.for_device(gpu.id, gpu.total_mb).describe()
        if words:
            say(f"{gpu.id}: {words} (vramscribe's policy only)", console)
    table = Table(
        "policy", "makespan", "speed", "OOMs", "failed", "rejected", "unfinished", "mean memory use"
    )
    stuck = 0
    for name in POLICIES:
        r = Simulation(scenario, make_policy(name), settings).run(max_time_s=max_sim_time_s)
        if name == "vramscribe":
            stuck = r.unfinished
        table.add_row(
            name,
            f"{r.makespan_s / 60:.1f} min",
            f"{r.throughput_x:.1f}x",
            str(r.oom_events),
            str(r.failed),
            str(r.rejected),
            f"[red]{r.unfinished}[/red]" if r.unfinished else "0",
            f"{100 * r.mean_mem_util:.0f}%",
        )
    console.print(table)
    if stuck:
        error(
            f"vramscribe left {stuck} job(s) unfinished after {max_sim_time_s:.0f} simulated s",
            console,
        )
        return 1
    return 0
