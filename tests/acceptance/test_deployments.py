"""What deployments expect of the running service: a graceful drain on SIGTERM,
retention of finished jobs, and signed completion webhooks.

Each test runs the real ``vramscribe serve`` process with the fake engine on a
shared fake GPU, and talks to it over loopback.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.acceptance.conftest import Service, start_service
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.store import Store

AUDIO = Path(__file__).parents[1] / "data" / "audio"


def _service(tmp_path: Path, *extra: str, speed_x: float = 200.0) -> tuple[Service, Path]:
    root = tmp_path / "audio"
    root.mkdir(exist_ok=True)
    shutil.copy(AUDIO / "jfk.flac", root / "clip.flac")
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=80_000)
    fake = {"device_path": str(gpu.path), "memory_mb": 600, "speed_x": speed_x, "load_s": 0.0}
    service = start_service(
        tmp_path, "--allowed-root", str(root), "--device", f"fake:{gpu.path}",
        "--model", "tiny", *extra, fake=fake,
    )  # fmt: skip
    return service, root


def _wait(c: httpx.Client, job_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = c.get(f"/v1/jobs/{job_id}").json()
        if job.get("status") in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_sigterm_lets_the_running_job_finish_and_leaves_pending_ones_queued(
    tmp_path: Path, services: list[Service]
) -> None:
    # 11 s of audio at 4x: the running job has about 3 s left when SIGTERM comes.
    service, _ = _service(tmp_path, "--max-instances", "1", speed_x=4.0)
    services.append(service)
    with service.client() as c:
        first = c.post("/v1/jobs", json={"path": "clip.flac"}).json()["id"]
        second = c.post("/v1/jobs", json={"path": "clip.flac"}).json()["id"]
        _wait(c, first, "processing")
        assert c.get(f"/v1/jobs/{second}").json()["status"] == "pending"
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    with Store(f"sqlite:///{service.data_dir / 'vramscribe.db'}") as store:
        done, waiting = store.get(first), store.get(second)
    assert done is not None and done.status.value == "completed", done
    assert waiting is not None and waiting.status.value == "pending", waiting
    assert (service.data_dir / "transcripts" / f"{first}.txt").is_file()
    # The next start runs what was left.
    service.restart()
    with service.client() as c:
        _wait(c, second, "completed")


def test_sigterm_stops_after_the_drain_timeout_as_before(
    tmp_path: Path, services: list[Service]
) -> None:
    service, _ = _service(tmp_path, "--drain-timeout", "0.5", speed_x=0.5)
    services.append(service)
    with service.client() as c:
        job = c.post("/v1/jobs", json={"path": "clip.flac"}).json()["id"]
        _wait(c, job, "processing")
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    assert time.monotonic() - started < 15  # the 22 s job was not waited for
    with Store(f"sqlite:///{service.data_dir / 'vramscribe.db'}") as store:
        left = store.get(job)
    assert left is not None and left.status.value == "processing"  # recovered on next start


def test_retention_erases_finished_jobs_with_their_audio_and_transcripts(
    tmp_path: Path, services: list[Service]
) -> None:
    # 0.0001 days is about 9 s: long enough to see the job, short enough to wait for.
    service, root = _service(tmp_path, "--retain-days", "0.0001")
    services.append(service)
    with service.client() as c, (root / "clip.flac").open("rb") as f:
        job = c.post("/v1/jobs", files={"file": ("talk.flac", f)}).json()["id"]
        _wait(c, job, "completed")
        uploads = list((service.data_dir / "uploads").iterdir())
        transcripts = list((service.data_dir / "transcripts").glob(f"{job}.*"))
        assert len(uploads) == 1 and len(transcripts) >= 4
        assert c.get(f"/v1/jobs/{job}/transcript").status_code == 200
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{job}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert not any(p.exists() for p in uploads + transcripts)
        # Audio named by path belongs to its owner: never erased.
        by_path = c.post("/v1/jobs", json={"path": "clip.flac"}).json()["id"]
        _wait(c, by_path, "completed")
        while c.get(f"/v1/jobs/{by_path}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert (root / "clip.flac").is_file()
