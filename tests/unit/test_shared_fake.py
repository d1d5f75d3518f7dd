"""The shared fake GPU, exercised by real processes on the wall clock.

Lag is checked by reading at a time just before an operation (which must not
show it) and by polling until it shows; no test depends on how fast it does.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vramscribe.devices.base import Reading
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.errors import DeviceOutOfMemory

ME = os.getpid()

CONTENDER = """
import json, os, random, sys, time
from pathlib import Path
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.errors import DeviceOutOfMemory

dev = SharedFakeDevice(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
go = Path(sys.argv[1] + ".go")
while not go.exists():
    time.sleep(0.005)
pid, held, ok, oom, lost = os.getpid(), 0.0, 0, 0, 0
for _ in range(20):
    mb = rng.uniform(50, 400)
    try:
        dev.allocate(pid, mb)
        held += mb
        ok += 1
    except DeviceOutOfMemory:
        oom += 1
    if abs(dev.true_state().used.get(pid, 0.0) - held) > 1e-6:
        lost += 1
    time.sleep(rng.uniform(0, 0.01))
    if rng.random() < 0.3:
        dev.release(pid)
        held = 0.0
dev.release(pid)
print(json.dumps({"ok": ok, "oom": oom, "lost": lost}))
"""

HOLDER = """
import os, sys, time
from vramscribe.devices.shared_fake import SharedFakeDevice

SharedFakeDevice(sys.argv[1]).allocate(os.getpid(), 300)
print("ready", flush=True)
time.sleep(60)
"""


def _poll(read: Callable[[], Reading], until: Callable[[Reading], bool]) -> Reading:
    """Read until the condition holds (or 10 s pass); the caller asserts on the result."""
    deadline = time.monotonic() + 10
    reading = read()
    while not until(reading) and time.monotonic() < deadline:
        time.sleep(0.02)
        reading = read()
    return reading


def _now(dev: SharedFakeDevice) -> Callable[[], Reading]:
    return lambda: dev.read(time.time())


def test_opened_by_path_it_is_the_same_device(tmp_path: Path) -> None:
    created = SharedFakeDevice.create(tmp_path / "gpu.json", "fake:3", total_mb=1000)
    opened = SharedFakeDevice(tmp_path / "gpu.json")
    assert (opened.id, opened.kind, opened.max_instances) == ("fake:3", "fake", None)
    created.allocate(ME, 100)
    assert opened.true_state().used == {ME: 100}


def test_allocations_and_releases_show_only_after_the_lag(tmp_path: Path) -> None:
    dev = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=1000, lag_s=0.3)
    before = time.time()
    dev.allocate(ME, 400)
    assert dev.read(before).free_mb == 1000
    assert dev.read(before).processes == {}
    seen = _poll(_now(dev), lambda r: r.free_mb == 600)
    assert (seen.free_mb, seen.processes) == (600, {ME: 400})

    before = time.time()
    assert dev.release(ME) == 400
    assert dev.read(before).free_mb == 600
    assert _poll(_now(dev), lambda r: r.free_mb == 1000).processes == {}


def test_allocation_beyond_real_total_fails_even_if_reading_looks_free(tmp_path: Path) -> None:
    dev = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=1000, lag_s=5)
    dev.allocate(ME, 800)
    assert dev.read(time.time()).free_mb == 1000
    with pytest.raises(DeviceOutOfMemory, match="out of memory allocating 300 MB"):
        dev.allocate(ME, 300)
    state = dev.true_state()
    assert state.oom_events == 1
    assert state.used == {ME: 800}
    assert state.free_mb == 200


def test_concurrent_processes_never_overbook_or_lose_updates(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    dev = SharedFakeDevice.create(path, total_mb=1000)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(path), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    Path(str(path) + ".go").touch()
    results = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        results.append(json.loads(out))
    state = dev.true_state()
    assert sum(r["ok"] for r in results) > 0
    assert [r["lost"] for r in results] == [0, 0]
    assert state.oom_events == sum(r["oom"] for r in results)
    assert 0 < state.peak_used_mb <= 1000
    assert state.used == {}


def test_memory_of_a_killed_process_is_taken_back(tmp_path: Path) -> None:
    dev = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=1000, lag_s=0.3)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "gpu.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        seen = _poll(_now(dev), lambda r: child.pid in r.processes)
        assert seen.processes == {child.pid: 300}
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: a zombie, which holds no memory.
        deadline = time.monotonic() + 10
        while child.pid in dev.true_state().used and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dev.true_state().used == {}
        # The drop lags like any release: a reading as of before it still shows the memory.
        assert dev.read(seen.time).processes == {child.pid: 300}
        assert _poll(_now(dev), lambda r: r.free_mb == 1000).processes == {}
    finally:
        child.kill()
        child.wait()


def test_neighbour_grows_only_into_real_free_memory(tmp_path: Path) -> None:
    dev = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=1000, foreign_mb=200)
    reading = dev.read(time.time())
    assert (reading.free_mb, reading.processes) == (800, {})
    dev.allocate(ME, 300)
    assert dev.set_foreign(500)
    assert dev.true_state().free_mb == 200
    assert not dev.set_foreign(900)
    state = dev.true_state()
    assert (state.foreign_mb, state.foreign_oom_events) == (500, 1)
    assert dev.set_foreign(100)
    assert dev.read(time.time()).free_mb == 600
