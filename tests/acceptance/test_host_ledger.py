"""A CLI batch and the service on one host and one fake GPU whose readings lag.

Each process alone sees the other's starting instances as free memory until
their memory shows in a reading (load time plus ``lag_s``), and both would
admit into the same gigabytes. The host-wide reservation ledger makes each
planner subtract the other's reservations: both load at once, nothing runs
out of memory, and every job runs once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from tests.acceptance.conftest import Service, start_service
from tests.acceptance.test_service_fake import upload_clips, wait_all
from tests.conftest import write_wav
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.paths import data_dir
from vramscribe.store.store import Store

TOTAL_MB = 8000.0


def owners(gpu: SharedFakeDevice, service: int, batch: int) -> frozenset[str]:
    """Which of the two processes have instances holding memory on the GPU now."""
    found: set[str] = set()
    for pid in gpu.true_state().used:
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.Error:
            continue
        if service in parents:
            found.add("service")
        if batch in parents:
            found.add("batch")
    return frozenset(found)


def test_a_batch_and_the_service_share_one_gpu_without_oom(
    tmp_path: Path, services: list[Service]
) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=TOTAL_MB, lag_s=1.5)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 4.0, "load_s": 1.0}
    device = ["--device", f"fake:{gpu.path}", "--model", "small"]
    (tmp_path / "svc").mkdir()
    svc = start_service(tmp_path / "svc", *device, fake=cfg)
    services.append(svc)
    clips = [write_wav(tmp_path / "svc-in" / f"s{n}.wav", 16.0) for n in range(8)]
    for n in range(8):
        write_wav(tmp_path / "batch" / f"b{n}.wav", 16.0)
    fake = ["--engine", "fake", "--fake-config", json.dumps(cfg), "--format", "txt"]
    log = (tmp_path / "batch.log").open("w")
    batch = subprocess.Popen(
        [sys.executable, "-m", "vramscribe", "transcribe", str(tmp_path / "batch"), *device, *fake],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen: set[frozenset[str]] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(owners(gpu, svc.proc.pid, batch.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with svc.client() as c:
            ids = upload_clips(c, clips[0].parent, len(clips), 16.0)
            jobs = wait_all(c, ids)
        batch.wait(timeout=240)
    finally:
        stop.set()
        watcher.join()
        log.close()
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, (tmp_path / "batch.log").read_text()[-3000:]
    assert frozenset({"service", "batch"}) in seen, "the two never ran at once"
    state = gpu.true_state()
    assert state.oom_events == 0
    assert state.peak_used_mb <= TOTAL_MB
    for job in jobs.values():
        assert job["status"] == "completed", job
        assert [h["to"] for h in job["history"]].count("completed") == 1
    assert sorted(p.name for p in (tmp_path / "batch").glob("*.txt")) == [
        f"b{n}.txt" for n in range(8)
    ]
    with Store(f"sqlite:///{data_dir() / 'batch.db'}") as store:
        done = [store.get(j.id) for j in store.list(limit=100)]
    assert len(done) == 8
    for rec in done:
        assert rec is not None and rec.status.value == "completed"
        assert [h.to_state.value for h in rec.history].count("completed") == 1
