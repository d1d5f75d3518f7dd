"""No decision on a stale first reading: real worker processes on a shared fake GPU whose
readings lag, with a neighbour that starts as the run does."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import write_wav
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.runner import Runner, Task


def test_a_neighbour_that_starts_with_the_run_causes_no_oom(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000, lag_s=1.5)
    time.sleep(1.6)  # the empty device is what every reading shows
    runner = Runner([gpu], Settings(reuse=False), run_dir=tmp_path / "run", poll_s=0.05)
    tasks = []
    for n in range(3):
        audio = write_wav(tmp_path / f"c{n}.wav", 10)
        cfg = {"device_path": str(gpu.path), "memory_mb": 2500, "speed_x": 10, "load_s": 0.2}
        job = Job(f"m{n}", "medium", audio_s=10, compute_type="float16")
        options = EngineOptions(engine="fake", model="medium", compute_type="float16", fake=cfg)
        tasks.append(Task(job, audio, options, [("txt", tmp_path / f"c{n}.txt")]))
        runner.add(tasks[-1])
    # The neighbour takes 4.5 GB as the run starts; the first readings, 1.5 s old, miss it.
    assert gpu.set_foreign(4500)
    runner.step()
    first = [t.pending_reason for t in tasks]
    assert all(t.job.state is JobState.PENDING for t in tasks)
    assert any("newer than its reading lag" in r for r in first), first
    while runner.busy():
        runner.step()
    state = gpu.true_state()
    assert state.oom_events == 0 and state.foreign_oom_events == 0
    assert [t.job.state for t in tasks] == [JobState.COMPLETED] * 3
    # Beside the neighbour one medium fits at a time (2.6 GiB each, 2.7 usable).
    starts = sorted(t.job.history[0].time for t in tasks)
    ends = sorted(t.job.history[-1].time for t in tasks)
    assert starts[1] >= ends[0] - 0.5
