"""What deployments expect of the running service: a graceful drain on SIGTERM,
retention of finished jobs, and signed completion webhooks.

Each test runs the real ``vramscribe serve`` process with the fake engine on a
shared fake GPU, and talks to it over loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

from tests.acceptance.conftest import TOKEN, Service, start_service
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.store import Store
from vramscribe.store.callbacks import Callbacks

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


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that fails its first two deliveries, as a flaky one would."""

    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((dict(self.headers.items()), body))
        self.send_response(500 if len(self.seen) <= 2 else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_completion_webhook_is_retried_and_signed_with_the_token(
    tmp_path: Path, services: list[Service]
) -> None:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/vramscribe?src=test"
    try:
        service, _ = _service(tmp_path)
        services.append(service)
        with service.client() as c:
            bad = c.post("/v1/jobs", json={"path": "clip.flac", "callback_url": "ftp://x"})
            assert bad.status_code == 422 and "callback_url" in bad.text
            job = c.post("/v1/jobs", json={"path": "clip.flac", "callback_url": url}).json()
            done = _wait(c, job["id"], "completed")
            deadline = time.monotonic() + 60
            while len(_Receiver.seen) < 3:
                assert time.monotonic() < deadline, _Receiver.seen
                time.sleep(0.1)
    finally:
        receiver.shutdown()
    time.sleep(0.5)
    assert len(_Receiver.seen) == 3  # two failures, one success, nothing after
    for headers, body in _Receiver.seen:
        payload = json.loads(body)
        assert payload["event"] == "job.finished"
        assert payload["job"]["id"] == job["id"] and payload["job"]["status"] == "completed"
        assert payload["job"]["history"] == done["history"]
        stamp = headers["X-Vramscribe-Timestamp"]
        mac = hmac.new(TOKEN.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        assert headers["X-Vramscribe-Signature"] == f"sha256={mac.hexdigest()}"
        forged = hmac.new(b"not the token", stamp.encode() + b"." + body, hashlib.sha256)
        assert headers["X-Vramscribe-Signature"] != f"sha256={forged.hexdigest()}"
    with Store(f"sqlite:///{service.data_dir / 'vramscribe.db'}") as store:
        kept = Callbacks(store).get(job["id"])
    assert kept is not None and kept.attempts == 3 and kept.delivered_at is not None
