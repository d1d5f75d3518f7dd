"""Scenarios as data: JSON files with the GPUs, the neighbours and the workload.

A scenario is seeded, so the same file always yields the same jobs, the same
neighbour script and the same per-job jitter: every policy meets exactly the
same world.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vramscribe.core.jobs import PRIORITY_NAMES
from vramscribe.core.profiles import profile_for
from vramscribe.errors import ScenarioError

GIB_MB = 1024.0


@dataclass(frozen=True, slots=True)
class ForeignSpec:
    """A neighbour on the GPU whose use jumps to a new level every ``period_s``."""

    min_mb: float
    max_mb: float
    period_s: float


@dataclass(frozen=True, slots=True)
class GpuSpec:
    id: str
    total_mb: float
    lag_s: float = 0.5
    s_max: float | None = None
    speed_factor: float = 1.0
    foreign: ForeignSpec | None = None


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job of a scenario, with the facts only the simulator knows."""

    id: str
    model: str
    audio_s: float
    priority: int
    arrival: float
    startup_s: float
    mem_factor: float


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    gpus: tuple[GpuSpec, ...]
    initial_jobs: int
    arrivals: int
    arrival_window_s: float
    high_fraction: float
    model_mix: dict[str, float]
    audio_median_s: float = 240.0
    audio_sigma: float = 1.0
    audio_min_s: float = 10.0
    audio_max_s: float = 5400.0
    compute_type: str = "float16"
    startup_s: tuple[float, float] = (1.0, 5.0)
    mem_jitter: tuple[float, float] = (0.95, 1.10)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    fixed_jobs: tuple[SimJob, ...] = ()

    def jobs(self) -> list[SimJob]:
        if self.fixed_jobs:
            return list(self.fixed_jobs)
        rng = random.Random(self.seed)
        models = sorted(self.model_mix)
        weights = [self.model_mix[m] for m in models]
        out: list[SimJob] = []
        total = self.initial_jobs + self.arrivals
        for i in range(total):
            model = rng.choices(models, weights)[0]
            audio = rng.lognormvariate(math.log(self.audio_median_s), self.audio_sigma)
            audio = min(self.audio_max_s, max(self.audio_min_s, audio))
            if i < self.initial_jobs:
                arrival, high = 0.0, False
            else:
                arrival = rng.uniform(0.0, self.arrival_window_s)
                high = rng.random() < self.high_fraction
            prio = PRIORITY_NAMES["high"] if high else PRIORITY_NAMES["normal"]
            out.append(
                SimJob(
                    id=f"j{i:05d}",
                    model=model,
                    audio_s=round(audio, 1),
                    priority=prio,
                    arrival=round(arrival, 3),
                    startup_s=rng.uniform(*self.startup_s),
                    mem_factor=rng.uniform(*self.mem_jitter),
                )
            )
        return out

    def foreign_script(self, gpu: GpuSpec, horizon_s: float) -> list[tuple[float, float]]:
        if gpu.foreign is None:
            return []
        rng = random.Random(f"{self.seed}:{gpu.id}")
        spec = gpu.foreign
        steps = int(horizon_s // spec.period_s) + 1
        return [(k * spec.period_s, rng.uniform(spec.min_mb, spec.max_mb)) for k in range(steps)]


def parse_scenario(data: dict[str, Any]) -> Scenario:
    try:
        gpus: list[GpuSpec] = []
        for g in data["gpus"]:
            count = int(g.get("count", 1))
            foreign = g.get("foreign")
            for k in range(count):
                gpus.append(
                    GpuSpec(
                        id=f"cuda:{len(gpus)}",
                        total_mb=float(g["total_gib"]) * GIB_MB,
                        lag_s=float(g.get("lag_s", 0.5)),
                        s_max=g.get("s_max"),
                        speed_factor=float(g.get("speed_factor", 1.0)),
                        foreign=ForeignSpec(
                            float(foreign["min_gib"]) * GIB_MB,
                            float(foreign["max_gib"]) * GIB_MB,
                            float(foreign.get("period_s", 60.0)),
                        )
                        if foreign
                        else None,
                    )
                )
                del k
        mix = {str(k): float(v) for k, v in data["model_mix"].items()}
        for model in mix:
            if profile_for(model) is None:
                raise ScenarioError(f"scenario {data.get('name')}: unknown model {model!r}")
        audio = data.get("audio", {})
        return Scenario(
            name=str(data["name"]),
            seed=int(data.get("seed", 0)),
            gpus=tuple(gpus),
            initial_jobs=int(data["initial_jobs"]),
            arrivals=int(data.get("arrivals", 0)),
            arrival_window_s=float(data.get("arrival_window_s", 3600.0)),
            high_fraction=float(data.get("high_fraction", 0.2)),
            model_mix=mix,
            audio_median_s=float(audio.get("median_s", 240.0)),
            audio_sigma=float(audio.get("sigma", 1.0)),
            audio_min_s=float(audio.get("min_s", 10.0)),
            audio_max_s=float(audio.get("max_s", 5400.0)),
            compute_type=str(data.get("compute_type", "float16")),
            description=str(data.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"malformed scenario: {exc!r}") from exc


def builtin_names() -> list[str]:
    folder = resources.files("vramscribe.sim") / "scenarios"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a JSON file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        text = path.read_text()
    else:
        res = resources.files("vramscribe.sim") / "scenarios" / f"{name_or_path}.json"
        if not res.is_file():
            known = ", ".join(builtin_names())
            raise ScenarioError(f"no scenario {name_or_path!r} (built in: {known})")
        text = res.read_text()
    return parse_scenario(json.loads(text))
