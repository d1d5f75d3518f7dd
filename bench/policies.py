"""Run every scenario under every policy through the simulator and print one table each.

    python bench/policies.py [--scenario NAME ...] [--json PATH]

The policies see the same seeded world (jobs, neighbours, reading lag); only
the admission rule differs. See docs/simulator.md for the model and the bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vramscribe.sim.policies import ALL_POLICIES, make_policy
from vramscribe.sim.scenarios import builtin_names, load_scenario
from vramscribe.sim.simulator import SimResult, Simulation

COLUMNS = [
    ("policy", "{:<12}"),
    ("makespan_s", "{:>9.0f}"),
    ("throughput_x", "{:>7.1f}"),
    ("ratio_lb", "{:>6.2f}"),
    ("oom_events", "{:>5d}"),
    ("failed", "{:>6d}"),
    ("p50_high", "{:>8.0f}"),
    ("p95_high", "{:>8.0f}"),
    ("p50_norm", "{:>8.0f}"),
    ("p95_norm", "{:>8.0f}"),
    ("starv", "{:>6.2f}"),
    ("loads", "{:>6d}"),
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
        r.p50_wait_high_s,
        r.p95_wait_high_s,
        r.p50_wait_normal_s,
        r.p95_wait_normal_s,
        r.starvation_ratio,
        r.model_loads,
        r.mean_mem_util,
    ]


def print_table(name: str, results: list[SimResult]) -> None:
    lb = results[0].lower_bound_s
    print(f"\n## {name}  (lower bound {lb:.0f} s)")
    print(" ".join(f"{c:>9}" if i else f"{c:<12}" for i, (c, _) in enumerate(COLUMNS)))
    for r in results:
        cells = []
        for i, ((_, fmt), value) in enumerate(zip(COLUMNS, row(r), strict=True)):
            text = fmt.format(value)
            cells.append(text.rjust(9) if i else text.ljust(12))
        print(" ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", action="append", help="scenario name or JSON file")
    parser.add_argument("--policy", action="append", help="policies (default: all)")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    args = parser.parse_args(argv)
    scenarios = args.scenario or builtin_names()
    policies = args.policy or ALL_POLICIES
    out: dict[str, dict[str, dict[str, object]]] = {}
    for name in scenarios:
        scenario = load_scenario(name)
        results = []
        started = time.perf_counter()
        for policy in policies:
            results.append(Simulation(scenario, make_policy(policy)).run())
        print_table(scenario.name, results)
        print(f"(simulated in {time.perf_counter() - started:.1f} s)")
        out[scenario.name] = {
            r.policy: {
                "makespan_s": round(r.makespan_s, 1),
                "throughput_x": round(r.throughput_x, 2),
                "lower_bound_s": round(r.lower_bound_s, 1),
                "oom_events": r.oom_events,
                "p50_wait_high_s": round(r.p50_wait_high_s, 1),
                "p95_wait_high_s": round(r.p95_wait_high_s, 1),
                "p50_wait_normal_s": round(r.p50_wait_normal_s, 1),
                "p95_wait_normal_s": round(r.p95_wait_normal_s, 1),
                "starvation_ratio": round(r.starvation_ratio, 3),
                "model_loads": r.model_loads,
                "mean_mem_util": round(r.mean_mem_util, 3),
                "completed": r.completed,
                "failed": r.failed,
                "foreign_oom_events": r.foreign_oom_events,
            }
            for r in results
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scenarios": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
