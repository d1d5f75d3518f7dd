import subprocess
import sys
import time
from collections.abc import Callable

from vramscribe.devices.cpu import CpuDevice

HOLD_200_MB = "import time; x = bytearray(200*1024*1024); time.sleep(30)"


def _rss(dev: CpuDevice, pid: int) -> float | None:
    return dev.read(time.time()).processes.get(pid)


def _poll(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition; callers assert it afterwards, so slowness is not failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not check():
        time.sleep(0.05)


def test_reading_reports_host_memory_and_a_core_based_cap() -> None:
    dev = CpuDevice(threads_per_instance=2)
    reading = dev.read(5.0)
    assert (dev.id, dev.kind) == ("cpu", "cpu")
    assert dev.max_instances is not None and dev.max_instances >= 1
    assert reading.time == 5.0
    assert reading.total_mb >= reading.free_mb > 0
    assert reading.processes == {}


def test_memory_fraction_withholds_part_of_the_host() -> None:
    whole = CpuDevice().read(0.0)
    half = CpuDevice(memory_fraction=0.5).read(0.0)
    assert half.total_mb == whole.total_mb / 2
    assert half.free_mb <= half.total_mb


def test_tracked_worker_memory_is_reported_until_it_exits() -> None:
    dev = CpuDevice()
    child = subprocess.Popen([sys.executable, "-c", HOLD_200_MB])
    try:
        dev.track(child.pid)
        _poll(lambda: (_rss(dev, child.pid) or 0.0) >= 190)
        assert (_rss(dev, child.pid) or 0.0) >= 190
        child.kill()
        # Not reaped yet: the zombie holds no memory and must not be reported.
        _poll(lambda: _rss(dev, child.pid) is None)
        assert _rss(dev, child.pid) is None
    finally:
        child.kill()
        child.wait()
    assert _rss(dev, child.pid) is None


def test_untracked_processes_are_not_reported() -> None:
    dev = CpuDevice()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dev.track(child.pid)
        assert child.pid in dev.read(0.0).processes
        dev.untrack(child.pid)
        assert child.pid not in dev.read(0.0).processes
    finally:
        child.kill()
        child.wait()
