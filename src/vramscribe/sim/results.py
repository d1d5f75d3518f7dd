"""From a finished simulation to its row of numbers (docs/simulator.md, "Columns")."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from vramscribe.core.jobs import DEFAULT_PRIORITY, Job, JobState
from vramscribe.sim.model import SimResult, percentile

if TYPE_CHECKING:
    from vramscribe.sim.simulator import Simulation

LARGE_MODELS = frozenset({"large-v3"})
SMALL_MODELS = frozenset({"tiny", "base", "small"})
# Waits shorter than this count as this in the starvation ratio: a ratio of two
# near-zero waits says nothing about starvation.
STARVATION_FLOOR_S = 60.0
# High priority is served when its p95 wait is at most this share of normal's, or
# under the floor above: where normal jobs wait seconds (warm instances, spare
# memory) a fifth of that is below the reading lag and the process start, and a
# high-priority job that starts within a minute has not been kept waiting.
PRIORITY_SHARE = 0.2


def job_wait(sim: Simulation, job: Job, makespan: float) -> float:
    """How long a job waited: until its first start if it completed, until it ended if it
    failed or was rejected, until its first start or the end of the run if it is unfinished."""
    if job.state is JobState.FAILED:
        return job.history[-1].time - job.submitted_at
    return sim.first_start.get(job.id, makespan) - job.submitted_at


def priority_met(p95_high: float, p95_normal: float) -> bool:
    """High priority's p95 wait within a fifth of normal's, or under a minute."""
    return p95_high <= max(STARVATION_FLOOR_S, PRIORITY_SHARE * p95_normal)


def starvation_ratio(large: list[float], small: list[float]) -> float:
    """Longest large-model wait over longest small-model wait, both floored at 60 s."""
    if not large or not small:
        return 0.0
    return max(STARVATION_FLOOR_S, max(large)) / max(STARVATION_FLOOR_S, max(small))


def summarize(sim: Simulation, unfinished: int, bound: float) -> SimResult:
    jobs = list(sim.jobs.values())
    done = [j for j in jobs if j.state is JobState.COMPLETED]
    failed = [j for j in jobs if j.state is JobState.FAILED and j.id not in sim.rejected]
    makespan = sim.now
    waits = {j.id: job_wait(sim, j, makespan) for j in jobs}
    high = [waits[j.id] for j in jobs if j.priority > DEFAULT_PRIORITY]
    normal = [waits[j.id] for j in jobs if j.priority <= DEFAULT_PRIORITY]
    # A job given up on spent its last ``max_wait_for_memory_s`` blocked by others' memory,
    # as long as the user's bound says whatever the order: only the wait before counts here.
    bound_s = sim.settings.max_wait_for_memory_s
    ranked = {j.id: waits[j.id] - (bound_s if j.id in sim.given_up else 0.0) for j in jobs}
    large = [ranked[j.id] for j in jobs if j.model in LARGE_MODELS]
    small = [ranked[j.id] for j in jobs if j.model in SMALL_MODELS]
    p95_high, p95_normal = percentile(high, 0.95), percentile(normal, 0.95)
    util = statistics.fmean(g.mem_integral for g in sim.gpus) / makespan if makespan else 0.0
    foreign = sum(g.device.foreign_oom_events for g in sim.gpus)
    return SimResult(
        scenario=sim.scenario.name,
        policy=sim.policy.name,
        makespan_s=makespan,
        throughput_x=sum(j.audio_s for j in done) / makespan if makespan else 0.0,
        lower_bound_s=bound,
        oom_events=sim.oom_events + foreign,
        foreign_oom_events=foreign,
        completed=len(done),
        failed=len(failed),
        unfinished=unfinished,
        retries=sim.retries,
        p50_wait_high_s=percentile(high, 0.50),
        p95_wait_high_s=p95_high,
        p50_wait_normal_s=percentile(normal, 0.50),
        p95_wait_normal_s=p95_normal,
        starvation_ratio=starvation_ratio(large, small),
        model_loads=sim.model_loads,
        mean_mem_util=util,
        rejected=len(sim.rejected),
        warm_starts=sim.warm_starts,
        batch_clamped=sim.batch_clamped,
        seed=sim.scenario.seed,
        gave_up=len(sim.given_up),
        priority_met=not high or priority_met(p95_high, p95_normal),
    )
