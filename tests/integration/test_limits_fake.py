"""Limits users set, with real worker processes on a shared fake GPU: the runner, the
command (transcribe, devices, simulate) and the service's /v1/devices."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from rich.console import Console

from tests import cli
from tests.conftest import write_wav
from tests.service_app import service_config, serving
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.limits import MIB, MemoryLimits
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.events import RunnerEvent
from vramscribe.runtime.runner import Runner, Task
from vramscribe.settings import RunSettings, service_run
from vramscribe.view import LiveView

GIB = 1024**3
SMALL_MB = 1200.0  # the built-in estimate of "small", float16, on a GPU


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.run_cli(*args, timeout=300, COLUMNS="200")


def test_with_a_memory_limit_our_workers_never_hold_more_and_all_jobs_complete(
    tmp_path: Path,
) -> None:
    """10 GB free beside a 2 GB neighbour would take six instances; a 3000 MiB limit
    allows two (2 x 1200 MB), whatever the readings say."""
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=10_000, foreign_mb=2000)
    limits = MemoryLimits(memory_limit_bytes={"fake:0": 3000 * MIB})
    settings = Settings(safety_margin=0.0, backoff_base_s=0.2, limits=limits)
    runner = Runner([gpu], settings, run_dir=tmp_path / "run", poll_s=0.05)
    tasks = []
    for n in range(6):
        audio = write_wav(tmp_path / "in" / f"c{n}.wav", 6.0)
        cfg = {"device_path": str(gpu.path), "memory_mb": SMALL_MB, "speed_x": 6.0, "load_s": 0.2}
        task = Task(Job(str(n), "small", audio_s=6.0, compute_type="float16"), audio,
                    EngineOptions(engine="fake", model="small", fake=cfg),
                    [("txt", tmp_path / "out" / f"c{n}.txt")])  # fmt: skip
        runner.add(task)
        tasks.append(task)
    held: list[float] = []
    busy: list[int] = []

    def watch(event: RunnerEvent) -> None:
        split = runner.memory_split("fake:0")
        if split is not None:
            held.append(split.ours_mb + split.reserved_mb)
        busy.append(len(runner.workers))

    runner.listeners.append(watch)
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    view = LiveView(runner, console)
    while runner.busy():
        runner.step()
        if runner.workers and not console.export_text(clear=False):
            console.print(view.render())
    assert all(t.job.state is JobState.COMPLETED for t in tasks), [t.job.error for t in tasks]
    state = gpu.true_state()
    # What our processes really held, at its highest: the device's peak less the neighbour.
    assert state.peak_used_mb - 2000 <= 3000
    assert state.oom_events == 0
    assert max(held) <= 3000 and max(busy) == 2  # the limit, not the memory, was the bound
    assert "ours at most 2.9 GiB" in console.export_text()


def test_the_command_takes_limits_and_refuses_bad_ones(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=10_000)
    for n in range(4):
        write_wav(tmp_path / "in" / f"c{n}.wav", 4.0)
    fake = json.dumps({"device_path": str(gpu.path), "memory_mb": SMALL_MB, "speed_x": 8})
    base = ["transcribe", str(tmp_path / "in"), "--device", f"fake:{gpu.path}", "--engine",
            "fake", "--model", "small", "--fake-config", fake, "--format", "txt"]  # fmt: skip
    ok = run_cli(*base, "--memory-limit", "fake:0=2500MiB", "--reserve", "fake:0=1GiB")
    assert ok.returncode == 0, ok.stderr
    assert gpu.true_state().peak_used_mb <= 2500
    assert len(list((tmp_path / "in").glob("*.txt"))) == 4
    # The run's timeline records the limits it ran under, for reports.
    [timeline] = (tmp_path / "vramscribe-data" / "runs").glob("*/timeline.jsonl")
    start = json.loads(timeline.read_text().splitlines()[0])
    assert start["settings"]["memory_limit_bytes"] == {"fake:0": 2500 * MIB}
    assert start["settings"]["reserve_bytes"] == {"fake:0": GIB}
    for args, words in [
        (["--memory-limit", "cuda:7=2GiB"], "unknown device 'cuda:7'; this run uses fake:0"),
        (["--reserve", "fake:0=lots"], "bad size 'lots'"),
        (["--memory-limit", "2GiB"], "expected DEVICE=SIZE"),
        (["--memory-fraction", "1.5"], "--memory-fraction must be in (0, 1], got 1.5"),
        (["--memory-fraction", "0"], "--memory-fraction must be in (0, 1]"),
    ]:
        bad = run_cli(*base, "--overwrite", *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert words in " ".join(bad.stderr.split()), (args, bad.stderr)


def test_devices_and_simulate_show_the_limits(tmp_path: Path) -> None:
    shown = run_cli("devices", "--device", "cpu", "--memory-limit", "cpu=2GiB",
                    "--reserve", "cpu=1GiB")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "limit" in shown.stdout and "2.0 GiB" in shown.stdout and "1.0 GiB" in shown.stdout
    wrong = run_cli("devices", "--device", "cpu", "--reserve", "cuda:0=1GiB")
    assert wrong.returncode == 2 and "unknown device 'cuda:0'" in wrong.stdout
    sim = run_cli("simulate", "tight-8g", "--memory-fraction", "0.5", "--reserve", "cuda:0=1GiB")
    assert sim.returncode == 0, sim.stderr
    assert "cuda:0: ours at most 4.0 GiB, 1.0 GiB left to others" in sim.stdout
    unknown = run_cli("simulate", "tight-8g", "--memory-limit", "cuda:1=1GiB")
    assert unknown.returncode == 2 and "unknown device 'cuda:1'" in unknown.stdout


def test_the_service_reports_its_limits_on_v1_devices(tmp_path: Path) -> None:
    limits = MemoryLimits({"fake:0": 512 * MIB}, None, {"fake:0": 256 * MIB})
    base = service_config(tmp_path)
    scheduler = Settings(keep_alive_s=service_run().scheduler.keep_alive_s, limits=limits)
    config = service_config(tmp_path, run=RunSettings(device=base.run.device, scheduler=scheduler))

    async def devices() -> list[dict[str, object]]:
        async with serving(config) as c:
            for _ in range(100):
                found: list[dict[str, object]] = (await c.get("/v1/devices")).json()["devices"]
                if found:
                    return found
                await asyncio.sleep(0.05)
        return []

    [device] = asyncio.run(devices())
    assert device["memory_limit_bytes"] == 512 * MIB and device["reserve_bytes"] == 256 * MIB
