"""A lower bound on the makespan of any policy (docs/simulator.md, "The lower bound").

It holds for every run that completes every job, whatever the policy does
with warm instances, batch sizes and concurrency, because it only relaxes the
simulator's physics:

- an instance can start processing no sooner than its job's arrival, nor
  before the first instance of its (model, compute type) could have started
  and loaded (a warm instance only ever comes from such a start);
- one instance runs at most at its solo speed times the batch gain of the
  largest batch size its file allows (``max_batch``) that fits the GPU
  beside the neighbour's minimum;
- a GPU gives at most ``min(ceiling, S(k)/k x sum of the k instances' gains)``
  solo units, over every ``k`` up to the instance cap and every choice of
  batch sizes whose memory fits beside the neighbour's minimum, with the
  largest ``S_max`` any mix could have;
- work that arrives at or after ``t`` can only be done after ``t``.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from vramscribe.core.footprints import builtin_estimate
from vramscribe.core.profiles import (
    BATCH_CANDIDATES,
    GPU_THROUGHPUT_CEILING,
    ModelProfile,
    batch_gain,
    contention,
    max_batch,
    profile_for,
)
from vramscribe.core.settings import Settings
from vramscribe.sim.scenarios import GpuSpec, Scenario, SimJob

Group = tuple[str, str]  # (model, compute type)


@dataclass(frozen=True, slots=True)
class _GroupFacts:
    profile: ModelProfile
    footprints: tuple[float, ...]  # MB per batch candidate, at the least memory jitter
    ready: float  # earliest time any instance of the group can be processing
    max_batch: int


def _room(gpu: GpuSpec) -> float:
    return gpu.total_mb - (gpu.foreign.min_mb if gpu.foreign else 0.0)


def _facts(group: Group, jobs: list[SimJob]) -> _GroupFacts:
    model, compute_type = group
    profile = profile_for(model)
    assert profile is not None, model
    mem = min(j.mem_factor for j in jobs)
    fps = tuple(builtin_estimate((model, compute_type, b, "cuda")) * mem for b in BATCH_CANDIDATES)
    first = min(j.arrival for j in jobs)
    ready = first + min(j.startup_s for j in jobs) + profile.load_s
    return _GroupFacts(profile, fps, ready, max(max_batch(j.audio_s) for j in jobs))


@functools.lru_cache(maxsize=4096)
def _best_rate(
    footprints: tuple[float, ...], room: float, b_hi: int, k_cap: int, s: float
) -> float:
    """Most solo units per second one GPU could give with these footprints (speed factor 1)."""
    cands = [
        (batch_gain(b, "cuda"), fp)
        for b, fp in zip(BATCH_CANDIDATES, footprints, strict=True)
        if b <= b_hi and fp <= room
    ]
    best = 0.0
    for k in range(1, k_cap + 1):
        if k * footprints[0] > room:
            break
        gain = max(
            (
                sum(g for g, _ in combo)
                for combo in itertools.combinations_with_replacement(cands, k)
                if sum(fp for _, fp in combo) <= room
            ),
            default=0.0,
        )
        best = max(best, min(GPU_THROUGHPUT_CEILING, contention(k, s) / k * gain))
    return best


def _largest_gain(facts: _GroupFacts, audio_s: float, room: float) -> float:
    cap = max_batch(audio_s)
    gains = [
        batch_gain(b, "cuda")
        for b, fp in zip(BATCH_CANDIDATES, facts.footprints, strict=True)
        if b <= cap and fp <= room
    ]
    return max(gains, default=0.0)


def _arrival_bound(items: Sequence[tuple[float, float]], ready: float, capacity: float) -> float:
    """max over t of max(t, ready) + (work arriving at or after t) / capacity."""
    if not items or capacity <= 0:
        return 0.0
    best = 0.0
    suffix = 0.0
    for arrival, work in sorted(items, reverse=True):
        suffix += work
        best = max(best, max(arrival, ready) + suffix / capacity)
    return best


def lower_bound(scenario: Scenario, jobs: list[SimJob], settings: Settings | None = None) -> float:
    """No policy that completes every job finishes before this (see the module docstring)."""
    settings = settings or Settings()
    k_cap = settings.max_instances_per_device
    groups: dict[Group, list[SimJob]] = defaultdict(list)
    for j in jobs:
        groups[(j.model, j.compute_type)].append(j)
    facts = {g: _facts(g, js) for g, js in groups.items()}
    s_mix = max(f.profile.s_max for f in facts.values()) if facts else 1.0

    def rate(gpu: GpuSpec, fps: tuple[float, ...], b_hi: int) -> float:
        s = gpu.s_max or s_mix
        return _best_rate(fps, _room(gpu), b_hi, k_cap, s) * gpu.speed_factor

    bound = 0.0
    everything: list[tuple[float, float]] = []
    for group, members in groups.items():
        f = facts[group]
        group_cap = sum(rate(gpu, f.footprints, f.max_batch) for gpu in scenario.gpus)
        if group_cap <= 0:
            continue  # fits nowhere: every policy fails these jobs
        items = [(j.arrival, j.audio_s / f.profile.speed_x) for j in members]
        everything.extend(items)
        bound = max(bound, _arrival_bound(items, f.ready, group_cap))
        bound = max(bound, _job_bound(scenario.gpus, f, members))
    smallest = tuple(min(fps) for fps in zip(*(f.footprints for f in facts.values()), strict=True))
    b_hi = max((f.max_batch for f in facts.values()), default=1)
    total_cap = sum(rate(gpu, smallest, b_hi) for gpu in scenario.gpus) if facts else 0.0
    ready = min((f.ready for f in facts.values()), default=0.0)
    return max(bound, _arrival_bound(everything, ready, total_cap))


def _job_bound(gpus: Sequence[GpuSpec], f: _GroupFacts, members: list[SimJob]) -> float:
    """The latest finish of a job of the group run alone, at once, at its best batch size."""
    bound = 0.0
    for j in members:
        speed = max(
            f.profile.speed_x * gpu.speed_factor * _largest_gain(f, j.audio_s, _room(gpu))
            for gpu in gpus
        )
        if speed > 0:
            bound = max(bound, max(j.arrival, f.ready) + j.audio_s / speed)
    return bound
