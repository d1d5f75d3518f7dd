"""The command as a user runs it, on a shared fake GPU with the fake engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from rich.console import Console

from tests.conftest import SPEECH_AUDIO, write_wav
from vramscribe.core.jobs import Job
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.runner import Runner, Task
from vramscribe.view import LiveView


def cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vramscribe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def test_ctrl_c_stops_workers_and_leaves_no_partial_outputs(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000)
    for n in range(3):
        write_wav(tmp_path / "in" / f"long{n}.wav", 600)
    fake = json.dumps({"device_path": str(gpu.path), "memory_mb": 1000, "speed_x": 5})
    proc = cli(
        "transcribe", str(tmp_path / "in"), "--device", f"fake:{gpu.path}", "--engine", "fake",
        "--model", "small", "--fake-config", fake, "--format", "txt", "--format", "json",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not gpu.true_state().used and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert workers, "no worker started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    for pid in workers:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    leftovers = [p for p in (tmp_path / "in").iterdir() if p.suffix != ".wav"]
    assert leftovers == []


def test_devices_command_lists_what_it_sees() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "devices", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert "cpu" in out.stdout and "GiB" in out.stdout


def test_devices_command_explains_a_missing_gpu() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "devices", "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    from vramscribe.devices.nvml import nvml_available

    if nvml_available():
        assert out.returncode == 0 and "cuda:0" in out.stdout
    else:
        assert out.returncode == 2 and "--device cpu" in out.stdout


def test_simulate_a_real_folder_and_a_scenario() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "simulate", str(SPEECH_AUDIO), "--gpus", "2x24g",
         "--model", "large-v3"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "3 files" in out.stdout and "vramscribe" in out.stdout and "sequential" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "vramscribe", "simulate", str(SPEECH_AUDIO), "--gpus", "lots"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "2x24g" in bad.stdout


def test_live_view_shows_memory_split_jobs_and_reasons(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=3000, foreign_mb=500)
    runner = Runner([gpu], run_dir=tmp_path / "run", poll_s=0.05)
    for n in range(3):
        audio = write_wav(tmp_path / f"c{n}.wav", 30)
        cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 20}
        runner.add(
            Task(
                Job(str(n), "small", audio_s=30, compute_type="float16"),
                audio,
                EngineOptions(engine="fake", model="small", fake=cfg),
                [("txt", tmp_path / f"c{n}.txt")],
            )
        )
    console = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
    view = LiveView(runner, console)
    seen = ""
    while runner.busy():
        runner.step()
        if runner.workers and runner.queue:
            console.print(view.render())
            seen = console.export_text()
            break
    runner.stop()
    assert "fake:0" in seen and "others 0.5" in seen and "reserved" in seen
    assert "waiting c" in seen and "memory" in seen


def test_an_interrupted_batch_resumes_from_the_store(tmp_path: Path) -> None:
    from vramscribe.paths import data_dir
    from vramscribe.store.store import Store

    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000)
    for n in range(4):
        write_wav(tmp_path / "in" / f"clip{n}.wav", 20)
    fake = json.dumps({"device_path": str(gpu.path), "memory_mb": 1000, "speed_x": 4})
    args = ("transcribe", str(tmp_path / "in"), "--device", f"fake:{gpu.path}", "--engine",
            "fake", "--model", "small", "--fake-config", fake, "--format", "txt")  # fmt: skip
    first = cli(*args)
    deadline = time.monotonic() + 60
    while len(gpu.true_state().used) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # like kill -9: no cleanup at all
    first.communicate(timeout=30)
    second = cli(*args)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "resuming" in err
    assert sorted(p.name for p in (tmp_path / "in").glob("*.txt")) == [
        f"clip{n}.txt" for n in range(4)
    ]
    with Store(f"sqlite:///{data_dir() / 'batch.db'}") as store:
        jobs = store.list(limit=100)
        assert len(jobs) == 4 and all(j.status.value == "completed" for j in jobs)
        recovered = [
            j for j in jobs
            if any("recovered after vramscribe stopped" in t.reason
                   for t in (store.get(j.id) or j).history)
        ]  # fmt: skip
        assert recovered, "no job shows the interruption"


def test_report_command_on_the_latest_run(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=3000)
    for n in range(3):
        write_wav(tmp_path / "in" / f"clip{n}.wav", 6)
    fake = json.dumps({"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 6,
                       "load_s": 0.4})  # fmt: skip
    run = cli("transcribe", str(tmp_path / "in"), "--device", f"fake:{gpu.path}", "--engine",
              "fake", "--model", "small", "--fake-config", fake, "--format", "txt")  # fmt: skip
    run.communicate(timeout=120)
    assert run.returncode == 0
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "report", "--html", str(tmp_path / "r.html"),
         "--png", str(tmp_path / "png"), "--chrome-trace", str(tmp_path / "trace.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "3/3 jobs completed" in out.stdout and "findings" in out.stdout
    assert "waiting for memory on fake:0" in out.stdout
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 3
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "load_times.png", "timeline.png", "waits.png"
    ]  # fmt: skip
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert any(e["ph"] == "X" for e in trace["traceEvents"])
    missing = subprocess.run([sys.executable, "-m", "vramscribe", "report", "nope"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no run named" in missing.stdout + missing.stderr
