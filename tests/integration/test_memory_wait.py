"""A job blocked by other processes' memory waits a bounded time; one waiting for our own
jobs does not count down. Real worker processes on the shared fake GPU."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_wav
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.runner import Runner, Task


def task(tmp: Path, gpu: SharedFakeDevice, name: str, model: str, memory_mb: float,
         compute_type: str = "float16", audio_s: float = 20) -> Task:  # fmt: skip
    audio = write_wav(tmp / f"{name}.wav", audio_s)
    cfg = {"device_path": str(gpu.path), "memory_mb": memory_mb, "speed_x": 8, "load_s": 0.2}
    return Task(
        Job(name, model, audio_s=audio_s, compute_type=compute_type),
        audio,
        EngineOptions(engine="fake", model=model, compute_type=compute_type, fake=cfg),
        [("txt", tmp / f"{name}.txt")],
    )


def test_blocked_by_a_neighbour_fails_with_its_reason_our_own_waits_do_not(
    tmp_path: Path,
) -> None:
    # 8000 MB with 3000 held by another process: 4200 MB usable beyond the 10% margin.
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000, foreign_mb=3000)
    settings = Settings(max_wait_for_memory_s=3.0)
    runner = Runner([gpu], settings, run_dir=tmp_path / "run", poll_s=0.05)
    tasks = {
        # large-v3 (4.5 GiB) fits on the empty device, not beside the neighbour.
        "big": task(tmp_path, gpu, "big", "large-v3", 4000),
        # large-v3 in float32 (8.6 GiB) fits on no device at all.
        "huge": task(tmp_path, gpu, "huge", "large-v3", 8000, "float32"),
        # Two mediums (2.5 GiB each) fit beside the neighbour one at a time: the second
        # waits for the first, longer than the 3 s bound, and still runs.
        "m1": task(tmp_path, gpu, "m1", "medium", 2400, audio_s=40),
        "m2": task(tmp_path, gpu, "m2", "medium", 2400, audio_s=40),
    }
    for t in tasks.values():
        runner.add(t)
    reasons: dict[str, set[str]] = {name: set() for name in tasks}
    while runner.busy():
        runner.step()
        for name, t in tasks.items():
            if t.pending_reason:
                reasons[name].add(t.pending_reason)
    assert gpu.true_state().oom_events == 0

    huge = tasks["huge"].job
    assert huge.state is JobState.FAILED and "more than any device can offer" in str(huge.error)
    assert huge.attempts == 0 and len(huge.history) == 1

    big = tasks["big"].job
    assert big.state is JobState.FAILED, big.history
    assert "blocked by other processes' memory" in str(big.error)
    for hint in ("smaller model", "int8", "another device", "memory limit"):
        assert hint in str(big.error), big.error
    assert any(r.startswith("blocked by other processes' memory on fake:0") for r in reasons["big"])
    assert any("gives up in" in r for r in reasons["big"])

    m1, m2 = tasks["m1"].job, tasks["m2"].job
    first, second = sorted(j.history[0].time for j in (m1, m2))
    assert second - first > settings.max_wait_for_memory_s
    for name in ("m1", "m2"):
        assert tasks[name].job.state is JobState.COMPLETED, tasks[name].job.history
    assert any("waiting for our running jobs" in r for r in reasons["m1"] | reasons["m2"])
    assert not any("gives up" in r for r in reasons["m1"] | reasons["m2"])


def test_the_command_gives_up_after_max_wait_for_memory(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000, foreign_mb=3000)
    write_wav(tmp_path / "in" / "talk.wav", 5)
    fake = json.dumps({"device_path": str(gpu.path), "memory_mb": 4000, "speed_x": 20})
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "transcribe", str(tmp_path / "in"),
         "--device", f"fake:{gpu.path}", "--engine", "fake", "--model", "large-v3",
         "--fake-config", fake, "--format", "txt", "--max-wait-for-memory", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0, text
    assert "gave up after 2 s blocked by other processes' memory" in text, text
    assert "int8" in text and "another device" in text
    assert not (tmp_path / "in" / "talk.txt").exists()
