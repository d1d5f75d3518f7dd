"""Run every scenario under every policy through the simulator and print the tables.

    python bench/policies.py [--scenario NAME ...] [--policy NAME ...] [--seeds N]
                             [--max-sim-time SECONDS] [--keep-alive SECONDS] [--json PATH]

Every scenario runs on its own seed and on the N seeds after it (3 by
default), all with one ``Settings``. The policies see the same seeded world
(jobs, neighbours, reading lag); only the admission rule differs. A row with
unfinished jobs (still not done at ``--max-sim-time``) or out-of-memory events
is marked; vramscribe's unfinished jobs fail the run (exit status 1). See docs/simulator.md
for the model, the columns and the bound.

vramscribe runs with the default ``Settings`` and the service's keep-alive
(60 s): jobs that arrive over an hour are a service's workload. The keep-alive
holds an idle instance only while no job waits, so where all jobs arrive at
once it changes nothing; ``--keep-alive 0`` runs a batch's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from vramscribe.core.settings import Settings
from vramscribe.settings import SERVICE_KEEP_ALIVE_S
from vramscribe.sim.policies import ALL_POLICIES, make_policy
from vramscribe.sim.scenarios import Scenario, builtin_names, load_scenario
from vramscribe.sim.simulator import SimResult, Simulation

SETTINGS = Settings(keep_alive_s=SERVICE_KEEP_ALIVE_S)
DEFAULT_MAX_SIM_TIME_S = 2 * 86400.0

COLUMNS = [
    ("policy", "{:<13}"),
    ("makespan", "{:>8.0f}"),
    ("speed_x", "{:>7.1f}"),
    ("ratio_lb", "{:>8.2f}"),
    ("ooms", "{:>5d}"),
    ("failed", "{:>6d}"),
    ("rejected", "{:>8d}"),
    ("unfinished", "{:>10d}"),
    ("gave_up", "{:>7d}"),
    ("p50_high", "{:>8.0f}"),
    ("p95_high", "{:>8.0f}"),
    ("p50_norm", "{:>8.0f}"),
    ("p95_norm", "{:>8.0f}"),
    ("hi_ok", "{:>5}"),
    ("starv", "{:>6.2f}"),
    ("loads", "{:>6d}"),
    ("warm", "{:>6d}"),
    ("mem_util", "{:>8.2f}"),
]


def row(r: SimResult) -> list[object]:
    return [
        r.policy,
        r.makespan_s,
        r.throughput_x,
        r.ratio_to_bound,
        r.oom_events,
        r.failed,
        r.rejected,
        r.unfinished,
        r.gave_up,
        r.p50_wait_high_s,
        r.p95_wait_high_s,
        r.p50_wait_normal_s,
        r.p95_wait_normal_s,
        "yes" if r.priority_met else "NO",
        r.starvation_ratio,
        r.model_loads,
        r.warm_starts,
        r.mean_mem_util,
    ]


def marker(unfinished: int, ooms: int) -> str:
    """The flag at the end of a row: what makes it not a clean run."""
    parts = []
    if unfinished:
        parts.append(f"UNFINISHED {unfinished}")
    if ooms:
        parts.append(f"OOM {ooms}")
    return "  <<< " + ", ".join(parts) if parts else ""


def header() -> str:
    return f"{'policy':<13} " + " ".join(name.rjust(max(9, len(name))) for name, _ in COLUMNS[1:])


def print_table(title: str, results: list[SimResult]) -> None:
    print(f"\n## {title}  (lower bound {results[0].lower_bound_s:.0f} s)")
    print(header())
    for r in results:
        cells = []
        for i, ((name, fmt), value) in enumerate(zip(COLUMNS, row(r), strict=True)):
            text = fmt.format(value)
            cells.append(text.rjust(max(9, len(name))) if i else text)
        print(" ".join(cells) + marker(r.unfinished, r.oom_events))


def print_summary(name: str, runs: dict[int, list[SimResult]]) -> None:
    seeds = sorted(runs)
    print(f"\n### {name} across seeds {', '.join(map(str, seeds))}")
    print(f"{'policy':<13} {'mean_ratio':>10} {'worst_ratio':>11} {'mean_speed':>10} "
          f"{'ooms':>6} {'failed':>6} {'rejected':>8} {'unfinished':>10} {'hi_ok':>5} "
          f"{'worst_starv':>11}")  # fmt: skip
    by_policy: dict[str, list[SimResult]] = {}
    for seed in seeds:
        for r in runs[seed]:
            by_policy.setdefault(r.policy, []).append(r)
    for policy, rs in by_policy.items():
        ratios = [r.ratio_to_bound for r in rs]
        ooms = sum(r.oom_events for r in rs)
        unfinished = sum(r.unfinished for r in rs)
        print(
            f"{policy:<13} {statistics.fmean(ratios):>10.2f} {max(ratios):>11.2f} "
            f"{statistics.fmean(r.throughput_x for r in rs):>10.1f} {ooms:>6d} "
            f"{sum(r.failed for r in rs):>6d} {sum(r.rejected for r in rs):>8d} "
            f"{unfinished:>10d} {sum(r.priority_met for r in rs):>3d}/{len(rs)} "
            f"{max(r.starvation_ratio for r in rs):>11.2f}" + marker(unfinished, ooms)
        )


def as_json(r: SimResult) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(r):
        value = getattr(r, f.name)
        out[f.name] = round(value, 3) if isinstance(value, float) else value
    out["ratio_to_bound"] = round(r.ratio_to_bound, 3)
    return out


def run_scenario(
    scenario: Scenario,
    policies: list[str],
    seeds: int,
    max_time_s: float,
    settings: Settings = SETTINGS,
) -> dict[int, list[SimResult]]:
    runs: dict[int, list[SimResult]] = {}
    for seed in range(scenario.seed, scenario.seed + seeds + 1):
        world = dataclasses.replace(scenario, seed=seed)
        started = time.perf_counter()
        results = [
            Simulation(world, make_policy(p), settings).run(max_time_s=max_time_s) for p in policies
        ]
        print_table(f"{scenario.name}, seed {seed}", results)
        print(f"(simulated in {time.perf_counter() - started:.1f} s)")
        runs[seed] = results
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", action="append", help="scenario name or JSON file")
    parser.add_argument("--policy", action="append", help="policies (default: all)")
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds beyond the scenario's own (default 3)"
    )
    parser.add_argument(
        "--max-sim-time",
        type=float,
        default=DEFAULT_MAX_SIM_TIME_S,
        help="simulated seconds after which jobs not done count as unfinished",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=SERVICE_KEEP_ALIVE_S,
        help=f"vramscribe's keep-alive, seconds (default {SERVICE_KEEP_ALIVE_S:g}, the service's)",
    )
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(SETTINGS, keep_alive_s=args.keep_alive)
    policies = args.policy or ALL_POLICIES
    out: dict[str, dict[str, list[dict[str, object]]]] = {}
    failing: list[str] = []
    for name in args.scenario or builtin_names():
        scenario = load_scenario(name)
        runs = run_scenario(scenario, policies, max(0, args.seeds), args.max_sim_time, settings)
        print_summary(scenario.name, runs)
        out[scenario.name] = {
            str(seed): [as_json(r) for r in results] for seed, results in runs.items()
        }
        # A baseline that gets stuck is that baseline's defect; vramscribe's fails the run.
        failing += [
            f"{scenario.name} seed {seed} {r.policy}"
            for seed, results in runs.items()
            for r in results
            if r.unfinished and r.policy == "vramscribe"
        ]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scenarios": out}, indent=2))
    if failing:
        print("\nFAILED (jobs unfinished at --max-sim-time): " + "; ".join(failing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
