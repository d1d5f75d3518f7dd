"""Scenarios as data: JSON files with the GPUs, the neighbours and the workload.

A scenario is seeded, so the same file always yields the same jobs, the same
neighbour script and the same per-job jitter: every policy meets exactly the
same world.

Two workload forms are read. The original one draws ``initial_jobs`` at t=0
and ``arrivals`` spread uniformly over ``arrival_window_s`` from a
``model_mix`` with one log-normal audio length. The ``classes`` form lists job
classes, each with its count, model, compute type, audio-length
distribution, priority and arrival process (docs/simulator.md has the format).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vramscribe.core.jobs import PRIORITY_NAMES, parse_priority
from vramscribe.core.profiles import profile_for
from vramscribe.errors import ScenarioError
from vramscribe.sim.neighbours import ForeignSpec, Neighbour, parse_neighbour

GIB_MB = 1024.0
__all__ = ["GIB_MB", "ForeignSpec", "GpuSpec", "Scenario", "SimJob", "load_scenario"]


@dataclass(frozen=True, slots=True)
class GpuSpec:
    id: str
    total_mb: float
    lag_s: float = 0.5
    s_max: float | None = None
    speed_factor: float = 1.0
    foreign: Neighbour | None = None
    reserve_mb: float = 0.0
    """Memory the user declared as others' (``--reserve``): never handed out, like the margin."""


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
    compute_type: str = "float16"


@dataclass(frozen=True, slots=True)
class AudioDist:
    """Audio length: ``fixed`` (a), ``uniform`` (a..b) or ``lognormal`` (median, sigma, a..b)."""

    kind: str
    a: float
    b: float = 0.0
    median: float = 0.0
    sigma: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return min(self.b, max(self.a, value))


@dataclass(frozen=True, slots=True)
class Arrival:
    """When a class's jobs arrive: ``all_at_once``, ``uniform`` over [t0, t1], or ``poisson``."""

    kind: str = "all_at_once"
    t0: float = 0.0
    t1: float = 0.0
    rate_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class JobClass:
    count: int
    model: str
    compute_type: str
    audio: AudioDist
    priority: int
    arrival: Arrival


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    gpus: tuple[GpuSpec, ...]
    initial_jobs: int = 0
    arrivals: int = 0
    arrival_window_s: float = 3600.0
    high_fraction: float = 0.2
    model_mix: dict[str, float] = field(default_factory=dict)
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
    classes: tuple[JobClass, ...] = ()

    def jobs(self) -> list[SimJob]:
        if self.fixed_jobs:
            return list(self.fixed_jobs)
        if self.classes:
            return self._class_jobs()
        return self._mix_jobs()

    def _mix_jobs(self) -> list[SimJob]:
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
            out.append(self._job(rng, i, model, self.compute_type, audio, prio, arrival))
        return out

    def _class_jobs(self) -> list[SimJob]:
        rng = random.Random(self.seed)
        out: list[SimJob] = []
        for cls in self.classes:
            clock = cls.arrival.t0
            for _ in range(cls.count):
                audio = cls.audio.draw(rng)
                if cls.arrival.kind == "uniform":
                    arrival = rng.uniform(cls.arrival.t0, cls.arrival.t1)
                elif cls.arrival.kind == "poisson":
                    clock += rng.expovariate(cls.arrival.rate_per_s)
                    arrival = clock
                else:
                    arrival = cls.arrival.t0
                job = self._job(
                    rng, len(out), cls.model, cls.compute_type, audio, cls.priority, arrival
                )
                out.append(job)
        return out

    def _job(
        self,
        rng: random.Random,
        n: int,
        model: str,
        compute_type: str,
        audio: float,
        priority: int,
        arrival: float,
    ) -> SimJob:
        return SimJob(
            id=f"j{n:05d}",
            model=model,
            audio_s=round(audio, 1),
            priority=priority,
            arrival=round(arrival, 3),
            startup_s=rng.uniform(*self.startup_s),
            mem_factor=rng.uniform(*self.mem_jitter),
            compute_type=compute_type,
        )

    def foreign_script(self, gpu: GpuSpec, horizon_s: float) -> list[tuple[float, float]]:
        if gpu.foreign is None:
            return []
        rng = random.Random(f"{self.seed}:{gpu.id}")
        return gpu.foreign.script(rng, horizon_s)


def _audio(data: Any) -> AudioDist:
    if not isinstance(data, dict) or len(data) != 1:
        raise ScenarioError(f"audio must be one of fixed, uniform, lognormal: {data!r}")
    ((kind, v),) = data.items()
    if kind == "fixed":
        return AudioDist("fixed", float(v))
    if kind == "uniform":
        a, b = (float(x) for x in v)
        return AudioDist("uniform", a, b)
    if kind == "lognormal":
        return AudioDist(
            "lognormal",
            float(v.get("min", 1.0)),
            float(v.get("max", 86400.0)),
            median=float(v["median"]),
            sigma=float(v["sigma"]),
        )
    raise ScenarioError(f"unknown audio distribution {kind!r} (fixed, uniform, lognormal)")


def _arrival(data: Any) -> Arrival:
    if data in (None, "all_at_once"):
        return Arrival()
    if isinstance(data, dict) and len(data) == 1:
        ((kind, v),) = data.items()
        if kind == "uniform":
            t0, t1 = (float(x) for x in v)
            return Arrival("uniform", t0, t1)
        if kind == "poisson":
            rate = float(v["rate_per_s"])
            if rate <= 0:
                raise ScenarioError("poisson arrivals need rate_per_s > 0")
            return Arrival("poisson", float(v.get("start", 0.0)), rate_per_s=rate)
    raise ScenarioError(f"arrival must be all_at_once, uniform or poisson: {data!r}")


def _job_class(data: dict[str, Any], compute_type: str) -> JobClass:
    model = str(data["model"])
    if profile_for(model) is None:
        raise ScenarioError(f"unknown model {model!r}")
    try:
        priority = parse_priority(data.get("priority", "normal"))
    except ValueError as exc:
        raise ScenarioError(str(exc)) from exc
    return JobClass(
        count=int(data["count"]),
        model=model,
        compute_type=str(data.get("compute_type", compute_type)),
        audio=_audio(data["audio"]),
        priority=priority,
        arrival=_arrival(data.get("arrival")),
    )


def _gpus(data: dict[str, Any]) -> list[GpuSpec]:
    gpus: list[GpuSpec] = []
    for g in data["gpus"]:
        foreign = g.get("foreign")
        neighbour = parse_neighbour(foreign) if foreign else None
        for _ in range(int(g.get("count", 1))):
            gpus.append(
                GpuSpec(
                    id=f"cuda:{len(gpus)}",
                    total_mb=float(g["total_gib"]) * GIB_MB,
                    lag_s=float(g.get("lag_s", 0.5)),
                    s_max=g.get("s_max"),
                    speed_factor=float(g.get("speed_factor", 1.0)),
                    foreign=neighbour,
                    reserve_mb=_reserve_mb(g),
                )
            )
    return gpus


def _reserve_mb(gpu: dict[str, Any]) -> float:
    """A GPU's ``reserve_gib`` or ``reserve_mb`` (0 if absent)."""
    if "reserve_mb" in gpu:
        value = float(gpu["reserve_mb"])
    else:
        value = float(gpu.get("reserve_gib", 0.0)) * GIB_MB
    if not 0.0 <= value < float(gpu["total_gib"]) * GIB_MB:
        raise ScenarioError(f"a GPU's reserve must be in [0, total), got {value:.0f} MB")
    return value


def parse_scenario(data: dict[str, Any]) -> Scenario:
    name = data.get("name")
    try:
        compute_type = str(data.get("compute_type", "float16"))
        classes = tuple(_job_class(c, compute_type) for c in data.get("classes", ()))
        if classes:
            counts: Counter[str] = Counter()
            for c in classes:
                counts[c.model] += c.count
            mix = {m: n / max(1, sum(counts.values())) for m, n in counts.items()}
        else:
            mix = {str(k): float(v) for k, v in data["model_mix"].items()}
        for model in mix:
            if profile_for(model) is None:
                raise ScenarioError(f"unknown model {model!r}")
        audio = data.get("audio", {})
        return Scenario(
            name=str(data["name"]),
            seed=int(data.get("seed", 0)),
            gpus=tuple(_gpus(data)),
            initial_jobs=int(data["initial_jobs"]) if not classes else 0,
            arrivals=int(data.get("arrivals", 0)),
            arrival_window_s=float(data.get("arrival_window_s", 3600.0)),
            high_fraction=float(data.get("high_fraction", 0.2)),
            model_mix=mix,
            audio_median_s=float(audio.get("median_s", 240.0)),
            audio_sigma=float(audio.get("sigma", 1.0)),
            audio_min_s=float(audio.get("min_s", 10.0)),
            audio_max_s=float(audio.get("max_s", 5400.0)),
            compute_type=compute_type,
            description=str(data.get("description", "")),
            classes=classes,
        )
    except ScenarioError as exc:
        raise ScenarioError(f"scenario {name}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
