"""One scheduler per store, with real service processes on a shared fake GPU.

On an SQLite data folder a second scheduler refuses to start and names the
running one. On PostgreSQL an ``--api-only`` service takes the jobs and a
scheduler sharing the store runs them, each exactly once, also after the
scheduler is killed with ``kill -9`` and started again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine

from tests.acceptance.conftest import Service, free_port, start_service
from tests.acceptance.test_service_fake import upload_clips, wait_all
from tests.databases import postgres_url, scratch_schema
from vramscribe.devices.shared_fake import SharedFakeDevice


@pytest.fixture
def shared_pg() -> Iterator[str]:
    """A PostgreSQL URL that sees only a fresh schema of its own."""
    admin = create_engine(postgres_url())
    try:
        with scratch_schema(admin) as url:
            yield url
    finally:
        admin.dispose()


def fake_gpu(tmp_path: Path) -> tuple[list[str], dict[str, object]]:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=6000)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 4.0, "load_s": 0.5}
    return ["--device", f"fake:{gpu.path}", "--model", "small"], cfg


def test_a_second_scheduler_on_an_sqlite_data_folder_refuses_naming_the_first(
    tmp_path: Path, services: list[Service]
) -> None:
    args, cfg = fake_gpu(tmp_path)
    first = start_service(tmp_path, *args, fake=cfg)
    services.append(first)
    command = [sys.executable, "-m", "vramscribe", "serve", "--data-dir", str(first.data_dir)]
    fake = ["--engine", "fake", "--fake-config", json.dumps(cfg)]
    second = subprocess.run(
        [*command, "--port", str(free_port()), *args, *fake],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2, second.stderr
    message = " ".join(second.stderr.split())
    assert "another vramscribe scheduler is already running" in message
    assert f"pid {first.proc.pid}" in message and first.url in message
    with first.client() as c:  # the first one is unharmed
        assert c.get("/readyz").status_code == 200


def test_api_only_and_a_scheduler_on_postgresql_run_every_job_once_across_kill_9(
    tmp_path: Path, services: list[Service], shared_pg: str
) -> None:
    args, cfg = fake_gpu(tmp_path)
    for folder in ("scheduler", "api"):
        (tmp_path / folder).mkdir()
    scheduler = start_service(tmp_path / "scheduler", "--store", shared_pg, *args, fake=cfg)
    services.append(scheduler)
    api = start_service(tmp_path / "api", "--store", shared_pg, "--api-only", *args, fake=cfg)
    services.append(api)
    with api.client() as c:
        ids = upload_clips(c, tmp_path / "in", 20, 8.0)
        deadline = time.monotonic() + 90
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [c.get(f"/v1/jobs/{j}").json()["status"] for j in ids]
            if "processing" in states and "pending" in states:
                break
            time.sleep(0.1)
        assert "processing" in states and "pending" in states, states
    workers = [p.pid for p in psutil.Process(scheduler.proc.pid).children(recursive=True)]
    assert workers
    scheduler.kill9()
    scheduler.restart()
    for pid in workers:  # the restarted node ended its own orphans
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    with api.client() as c:
        jobs = wait_all(c, ids)
        for job_id, job in jobs.items():
            assert job["status"] == "completed", job
            assert [h["to"] for h in job["history"]].count("completed") == 1, job["history"]
            transcript = c.get(f"/v1/jobs/{job_id}/transcript", params={"format": "json"})
            assert transcript.status_code == 200, transcript.text
            assert abs(json.loads(transcript.text)["duration_s"] - 8.0) < 0.1
        recovered = [
            j for j in jobs.values() if any("recovered after" in h["reason"] for h in j["history"])
        ]
        assert recovered  # the jobs the killed scheduler was running went back and ran again
    with httpx.Client(base_url=scheduler.url) as c:
        assert c.get("/readyz").status_code == 200
