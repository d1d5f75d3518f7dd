"""The host-wide reservation ledger: others' reservations counted, the dead forgotten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.runtime.reservations import LEDGER_FILE, HostLedger, LedgerDevice, device_key


def test_each_process_sees_the_others_reservations_and_the_dead_are_dropped(
    tmp_path: Path,
) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000)
    key = device_key(gpu)
    path = tmp_path / LEDGER_FILE
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path.write_text(
        json.dumps({dead.stdout.strip(): {"devices": {key: {"held": 0, "outstanding": 5000}}}})
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        check_sessions(gpu, path, key, other.pid)
    finally:
        other.kill()
        other.wait()


def check_sessions(gpu: SharedFakeDevice, path: Path, key: str, other_pid: int) -> None:
    service = HostLedger(path)
    batch = HostLedger(path, pid=other_pid)  # another live process
    with batch.session(lambda: {key: {"held": 1000.0, "outstanding": 1500.0}}):
        assert batch.others == {}  # the dead process's 5000 MB are not counted
    with service.session(lambda: {key: {"held": 0.0, "outstanding": 700.0}}):
        assert service.others == {key: 1500.0}
        assert service.managed == {key: 2500.0}
        reading = LedgerDevice(gpu, service).read(0.0)
        assert reading.free_mb == 8000 - 1500
    with batch.session(dict):
        assert batch.others == {key: 700.0}
    assert set(json.loads(path.read_text())) == {str(service.pid)}  # batch left, dead dropped
    service.leave()
    assert json.loads(path.read_text()) == {}


def test_devices_are_named_host_wide(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=100)
    again = SharedFakeDevice(tmp_path / "." / "gpu.json")
    assert device_key(gpu) == device_key(again) == f"file:{(tmp_path / 'gpu.json').resolve()}"
