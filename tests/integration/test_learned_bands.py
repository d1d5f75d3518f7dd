"""Estimates learned per audio-length band, with real worker processes on the shared fake
GPU: a high peak seen on a short file does not keep a long one out beside a neighbour."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_wav
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.profiles import growth
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.runner import Runner, Task


def run_one(runner: Runner, gpu: SharedFakeDevice, tmp: Path, name: str, audio_s: float,
            memory_mb: float) -> Job:  # fmt: skip
    audio = write_wav(tmp / f"{name}.wav", audio_s)
    cfg = {"device_path": str(gpu.path), "memory_mb": memory_mb, "speed_x": 400, "load_s": 0.1}
    job = Job(name, "small", audio_s=audio_s, compute_type="float16")
    options = EngineOptions(engine="fake", model="small", compute_type="float16", fake=cfg)
    runner.add(Task(job, audio, options, [("txt", tmp / f"{name}.txt")]))
    while runner.busy():
        runner.step()
    return job


def test_a_long_file_is_estimated_from_long_files(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=4000)
    settings = Settings(reuse=False, max_wait_for_memory_s=5.0)
    runner = Runner([gpu], settings, run_dir=tmp_path / "run", poll_s=0.05)
    key = ("small", "float16", 1, "fake")
    # A short file peaks high (1150 MB), a long one lower (1000 MB).
    assert run_one(runner, gpu, tmp_path, "short", 20, 1150).state is JobState.COMPLETED
    assert run_one(runner, gpu, tmp_path, "long", 600, 1000).state is JobState.COMPLETED
    learned = runner.book.estimate(key, 620)
    assert 1000 <= learned < 1010, learned
    # A neighbour now leaves 1100 MB beyond the margin. One high-water mark for every length
    # grown by the growth guess would ask for about 1190 MB and keep the file out for good.
    assert 1150 / growth(20) * growth(620) > 1100
    assert gpu.set_foreign(4000 - 400 - 1100)
    job = run_one(runner, gpu, tmp_path, "next", 620, 1000)
    assert job.state is JobState.COMPLETED, job.history
    assert gpu.true_state().oom_events == 0
