"""Record a run's events to a compact JSON-lines file, off the scheduler's thread.

The file is what ``vramscribe report`` reads: state changes with reasons,
loads (time and memory), progress, releases (how long memory took to come
back), failures, pending-reason changes, and device readings at a steady
interval. The runner's listener only enqueues; a writer thread serialises,
so recording never slows a scheduling decision.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import IO, Any

from vramscribe.runtime.events import (
    AttemptFailed,
    InstanceLoaded,
    JobChanged,
    MemoryReleased,
    ProgressMade,
    ReasonChanged,
    RunnerEvent,
    Tick,
    payload,
    task_of,
)
from vramscribe.runtime.runner import Runner

DEVICE_EVERY_S = 1.0
PROGRESS_EVERY_S = 2.0


class Timeline:
    def __init__(self, runner: Runner, path: Path) -> None:
        self.runner = runner
        self.path = path
        self.clock = runner.clock
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._last_device = 0.0
        self._last_progress: dict[str, float] = {}
        self._seen_history: dict[str, int] = {}
        self._thread = threading.Thread(target=self._write, name="timeline", daemon=True)
        self._thread.start()
        self._q.put(
            {
                "t": runner.clock(),
                "type": "run_start",
                "devices": [{"id": d.id, "kind": d.kind} for d in runner.devices.values()],
                "settings": {
                    "safety_margin": runner.settings.safety_margin,
                    "max_loads_per_device": runner.settings.max_loads_per_device,
                    "max_instances_total": runner.settings.max_instances_total,
                    # Limits users set and the fallback ladder's opt-in rungs.
                    "memory_limit_bytes": dict(runner.settings.limits.memory_limit_bytes),
                    "memory_fraction": runner.settings.limits.memory_fraction,
                    "reserve_bytes": dict(runner.settings.limits.reserve_bytes),
                    "fallback": list(runner.settings.fallback),
                },
            }
        )

    def __call__(self, event: RunnerEvent) -> None:
        now = self.clock()
        task = task_of(event)
        if isinstance(event, Tick):
            if now - self._last_device >= DEVICE_EVERY_S:
                self._last_device = now
                self._devices(now)
            return
        if task is None:
            return
        job = task.job
        base = {"t": now, "job": job.id, "model": job.model, "input": task.input.name}
        if isinstance(event, JobChanged):
            if job.id not in self._seen_history:
                self._q.put({**base, "t": job.submitted_at, "type": "submitted",
                             "audio_s": job.audio_s, "priority": job.priority})  # fmt: skip
            seen = self._seen_history.get(job.id, 0)
            for tr in job.history[seen:]:
                self._q.put(
                    {**base, "t": tr.time, "type": "state", "from": tr.from_state.value,
                     "to": tr.to_state.value, "reason": tr.reason, "device": task.device_id,
                     "attempt": job.attempts, "audio_s": job.audio_s, "priority": job.priority}
                )  # fmt: skip
            self._seen_history[job.id] = len(job.history)
        elif isinstance(event, ProgressMade):
            if now - self._last_progress.get(job.id, 0.0) >= PROGRESS_EVERY_S:
                self._last_progress[job.id] = now
                self._q.put({**base, "type": "progress", "done_s": task.progress_s,
                             "audio_s": job.audio_s})  # fmt: skip
        elif isinstance(event, InstanceLoaded | MemoryReleased | AttemptFailed | ReasonChanged):
            self._q.put({**base, **payload(event)})

    def _devices(self, now: float) -> None:
        r = self.runner
        for dev_id in list(r.readings):
            split = r.memory_split(dev_id)
            if split is None:
                continue
            self._q.put(
                {
                    "t": now,
                    "type": "device",
                    "device": dev_id,
                    "total_mb": split.total_mb,
                    "free_mb": split.measured_free_mb,
                    "ours_mb": split.ours_mb,
                    "others_mb": split.others_mb,
                    "reserved_mb": split.reserved_mb,
                    "instances": len(split.instances),
                    "loading": sum(1 for i in split.instances if i.state.value == "loading"),
                    "idle": sum(1 for i in split.instances if i.idle_since is not None),
                    "pending": len(r.queue),
                }
            )

    def close(self) -> None:
        self._q.put({"t": self.clock(), "type": "run_end",
                     "loads_avoided": self.runner.loads_avoided})  # fmt: skip
        self._q.put(None)
        self._thread.join(timeout=10)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        out: IO[str]
        with self.path.open("a", buffering=1 << 16) as out:
            while True:
                item = self._q.get()
                if item is None:
                    return
                out.write(json.dumps(item, separators=(",", ":")) + "\n")
                if self._q.empty():
                    out.flush()
