"""The fallback ladder with real worker processes: the fake engine runs out of memory on a
shared fake GPU until the ladder reaches a rung that works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_wav
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.events import RunnerEvent, SegmentTranscribed
from vramscribe.runtime.runner import Runner, Task


def ladder_task(tmp_path: Path, gpu: SharedFakeDevice, fail_attempts: list[int]) -> Task:
    audio = write_wav(tmp_path / "clip.wav", 8.0)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1200.0, "speed_x": 20.0, "load_s": 0.1,
           "fail": "oom_midway", "fail_attempts": fail_attempts}  # fmt: skip
    engine = EngineOptions(engine="fake", model="small", fake=cfg, batch_size=4)
    job = Job("1", "small", audio_s=8.0, compute_type="default", batch_size=4)
    return Task(job, audio, engine, [("json", tmp_path / "out" / "clip.json")])


def test_out_of_memory_walks_the_ladder_down_to_the_cpu(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=10_000)
    settings = Settings(backoff_base_s=0.1, oom_cooldown_s=0.1, fallback=("int8", "cpu"))
    runner = Runner([gpu], settings, run_dir=tmp_path / "run", poll_s=0.05)
    assert sorted(d.kind for d in runner.devices.values()) == ["cpu", "fake"]
    task = ladder_task(tmp_path, gpu, [1, 2, 3, 4])
    runner.add(task)
    runner.run()
    assert task.job.state is JobState.COMPLETED, task.job.error
    assert task.job.attempts == 5  # batch 4, 2, 1, int8, then the CPU: within the default limit
    starts = [h.reason for h in task.job.history if h.to_state is JobState.LOADING]
    where = ["fake:0", "fake:0", "fake:0", "fake:0", "cpu"]
    batches = [4, 2, 1, 1, 1]
    for reason, device, batch in zip(starts, where, batches, strict=True):
        assert reason.startswith(f"starting on {device} ") and f"batch size {batch}" in reason
    retries = [h.reason for h in task.job.history if h.to_state is JobState.PENDING]
    rungs = ["attempt 2 on batch size 2", "attempt 3 on batch size 1", "attempt 4 on int8",
             "attempt 5 on the CPU (int8)"]  # fmt: skip
    for reason, rung in zip(retries, rungs, strict=True):
        assert reason.startswith("oom: ") and reason.endswith(f"({rung})")
    assert (task.job.compute_type, task.job.device_kind, task.job.fallback_steps) == (
        "int8",
        "cpu",
        4,
    )
    doc = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert doc["settings"]["device"] == "cpu" and doc["settings"]["compute_type"] == "int8"
    assert doc["settings"]["batch_size"] == 1 and doc["settings"]["attempts"] == 5
    # Each failure came halfway through: the later attempts resumed after it.
    assert [s["text"] for s in doc["segments"]] == [f"fake segment {k}" for k in range(1, 5)]


def test_without_opting_in_only_the_batch_steps_down_and_the_cpu_stays_out(
    tmp_path: Path,
) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=10_000)
    settings = Settings(backoff_base_s=0.1, oom_cooldown_s=0.1)
    runner = Runner([gpu], settings, run_dir=tmp_path / "run", poll_s=0.05)
    assert [d.kind for d in runner.devices.values()] == ["fake"]
    task = ladder_task(tmp_path, gpu, [1, 2])
    segments: list[int] = []

    def on_segment(event: RunnerEvent) -> None:
        if isinstance(event, SegmentTranscribed):
            segments.append(event.task.job.attempts)

    runner.listeners.append(on_segment)
    runner.add(task)
    runner.run()
    assert task.job.state is JobState.COMPLETED, task.job.error
    doc = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert doc["settings"] == {"device": "fake:0", "compute_type": "float16", "batch_size": 1,
                               "attempts": 3, "resumed_from_s": [4.0, 4.0]}  # fmt: skip
    assert 3 in segments


def test_the_command_refuses_an_unknown_rung(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "clip.wav", 1.0)
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "transcribe", str(audio), "--device", "cpu",
         "--fallback", "int8,fp8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "unknown rung 'fp8'; the rungs are int8 and cpu" in " ".join(out.stderr.split())
