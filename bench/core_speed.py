"""Median time of one ``plan`` call, on states like a busy service's.

    python bench/core_speed.py [--json PATH]

``10000x8``: 10,000 pending jobs of mixed models and priorities, eight 80 GiB
GPUs each running four instances with room for more, so the planner admits
up to its per-device load cap and stops. ``100x1``: 100 pending, one 24 GiB GPU.
``10000x8-full-scan``: the worst case, where every device has a little memory
free but no pending job fits, so the planner looks at every job.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.planner import plan
from vramscribe.core.queue import PendingQueue
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView

MODELS = ["tiny", "base", "small", "medium", "large-v3"]


def make_state(
    pending: int, devices: int, free_mb: float, total_mb: float, models: list[str], seed: int = 1
) -> tuple[PendingQueue, list[DeviceSnapshot], list[InstanceView], Settings]:
    rng = random.Random(seed)
    settings = Settings()
    queue = PendingQueue(settings.aging_s_per_point)
    for i in range(pending):
        queue.push(
            Job(
                f"j{i}",
                rng.choice(models),
                audio_s=rng.lognormvariate(5.5, 1.0),
                priority=rng.choice([50, 50, 50, 50, 75]),
                submitted_at=rng.uniform(0, 600),
                compute_type="float16",
            )
        )
    snaps = [DeviceSnapshot(f"cuda:{d}", "cuda", total_mb, free_mb) for d in range(devices)]
    insts = [
        InstanceView(f"r{d}-{k}", f"cuda:{d}", JobState.PROCESSING, 3000, 2900, 700 + 10 * k)
        for d in range(devices)
        for k in range(4)
    ]
    return queue, snaps, insts, settings


def median_ms(
    state: tuple[PendingQueue, list[DeviceSnapshot], list[InstanceView], Settings],
    repeats: int,
) -> float:
    queue, snaps, insts, settings = state
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan(650.0, queue, snaps, insts, settings)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time one plan call")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    results = {
        "median_ms_10000x8": median_ms(make_state(10_000, 8, 40_000, 81_920, MODELS), args.repeats),
        "median_ms_100x1": median_ms(make_state(100, 1, 12_000, 24_576, MODELS), args.repeats),
        "median_ms_10000x8_full_scan": median_ms(
            make_state(10_000, 8, 9_600, 81_920, ["medium", "large-v3"]), max(5, args.repeats // 10)
        ),
    }
    for name, value in results.items():
        print(f"{name:32} {value:8.3f} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
