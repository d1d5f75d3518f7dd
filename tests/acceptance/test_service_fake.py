"""The service as a subprocess on loopback, with the fake engine on a shared fake GPU."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.acceptance.conftest import TOKEN, Service, start_service
from tests.conftest import write_wav
from vramscribe.devices.shared_fake import SharedFakeDevice

FINAL = {"completed", "failed", "cancelled"}


def fake_service(tmp_path: Path, services: list[Service], *extra: str, **fake: Any) -> Service:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=6000)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 4.0, "load_s": 0.5, **fake}
    svc = start_service(tmp_path, "--device", f"fake:{gpu.path}", "--model", "small", *extra,
                        fake=cfg)  # fmt: skip
    services.append(svc)
    return svc


def upload_clips(client: httpx.Client, folder: Path, count: int, seconds: float) -> list[str]:
    """Upload ``count`` generated clips; returns the job ids in order."""
    ids = []
    for n in range(count):
        wav = write_wav(folder / f"clip{n:02d}.wav", seconds)
        with wav.open("rb") as fh:
            r = client.post("/v1/jobs", files={"file": (wav.name, fh)})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def wait_all(client: httpx.Client, ids: list[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j: client.get(f"/v1/jobs/{j}").json() for j in ids}
        if all(v["status"] in FINAL for v in jobs.values()):
            return jobs
        time.sleep(0.5)
    raise AssertionError("jobs did not finish")


def test_kill_9_mid_run_then_restart_completes_every_job_exactly_once(
    tmp_path: Path, services: list[Service]
) -> None:
    svc = fake_service(tmp_path, services)
    with svc.client() as c:
        ids = upload_clips(c, tmp_path / "in", 20, 8.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [c.get(f"/v1/jobs/{j}").json()["status"] for j in ids]
            # Jobs in flight. Warm instances load once each, often at the same moment, so
            # a loading job beside a processing one is a matter of timing, not required.
            if any(s in ("loading", "processing") for s in states):
                break
            time.sleep(0.05)
        assert any(s in ("loading", "processing") for s in states), states
        interrupted = [
            j for j, s in zip(ids, states, strict=True) if s in ("loading", "processing")
        ]
    workers = [p.pid for p in psutil.Process(svc.proc.pid).children(recursive=True)]
    svc.kill9()
    svc.restart()
    for pid in workers:  # orphans of the killed service were ended on restart
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    with svc.client() as c:
        jobs = wait_all(c, ids)
        for job_id, job in jobs.items():
            assert job["status"] == "completed", job
            completions = [h for h in job["history"] if h["to"] == "completed"]
            assert len(completions) == 1, job["history"]
            transcript = c.get(f"/v1/jobs/{job_id}/transcript", params={"format": "json"})
            data = json.loads(transcript.text)
            assert data["segments"] and abs(data["duration_s"] - 8.0) < 0.1
        for job_id in interrupted:
            reasons = [h["reason"] for h in jobs[job_id]["history"]]
            assert any("recovered after vramscribe stopped" in r for r in reasons), reasons
    leftovers = [p.name for p in (svc.data_dir / "transcripts").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_graceful_stop_keeps_every_job_for_the_next_start(
    tmp_path: Path, services: list[Service]
) -> None:
    # No drain time: running jobs are interrupted, as after the drain timeout
    # (test_deployments.py shows running jobs finishing within it).
    svc = fake_service(tmp_path, services, "--drain-timeout", "0")
    with svc.client() as c:
        ids = upload_clips(c, tmp_path / "in", 6, 12.0)
        deadline = time.monotonic() + 60
        while "processing" not in [c.get(f"/v1/jobs/{j}").json()["status"] for j in ids]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    svc.proc.terminate()  # SIGTERM: uvicorn shuts the service down cleanly
    assert svc.proc.wait(timeout=60) in (0, -15)  # uvicorn re-raises the signal at the end
    [run] = (svc.data_dir / "runs").iterdir()
    last = (run / "timeline.jsonl").read_text().strip().splitlines()[-1]
    assert json.loads(last)["type"] == "run_end", "the service did not shut down cleanly"
    svc.restart()
    with svc.client() as c:
        jobs = wait_all(c, ids)
    assert [j["status"] for j in jobs.values()] == ["completed"] * 6
    assert not any(h["to"] == "cancelled" for j in jobs.values() for h in j["history"])
    assert any(
        "recovered after vramscribe stopped" in h["reason"]
        for j in jobs.values()
        for h in j["history"]
    )


def test_bad_requests_get_clear_4xx_and_leave_the_service_healthy(
    tmp_path: Path, services: list[Service]
) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    write_wav(root / "ok.wav", 4.0)
    outside = write_wav(tmp_path / "secret.wav", 4.0)
    (root / "escape.wav").symlink_to(outside)
    svc = fake_service(tmp_path, services, "--allowed-root", str(root), "--max-upload-mib", "1")
    good = None
    with svc.client() as c:
        r = c.post("/v1/jobs", json={"path": "ok.wav"})
        assert r.status_code == 201, r.text
        good = r.json()["id"]
        cases: list[tuple[str, httpx.Response, int, str]] = [
            ("no token", svc.client(None).get("/v1/jobs"), 401, "missing bearer token"),
            ("wrong token", svc.client("nope").get("/v1/jobs"), 401, "wrong token"),
            ("dotdot", c.post("/v1/jobs", json={"path": "../secret.wav"}), 400, ".."),
            ("absolute", c.post("/v1/jobs", json={"path": str(outside)}), 403, "outside"),
            ("symlink", c.post("/v1/jobs", json={"path": "escape.wav"}), 403, "outside"),
            (
                "too large",
                c.post("/v1/jobs", files={"file": ("big.wav", os.urandom(2 * 1024 * 1024))}),
                413,
                "too large",
            ),
            (
                "not audio",
                c.post("/v1/jobs", files={"file": ("notes.wav", b"hello, not audio\n" * 50)}),
                415,
                "not usable audio",
            ),
            (
                "unknown model",
                c.post("/v1/jobs", json={"path": "ok.wav", "model": "whisper-galaxy"}),
                400,
                "model",
            ),
            ("unknown job", c.get("/v1/jobs/doesnotexist"), 404, "no job"),
            (
                "invalid json",
                c.post(
                    "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
                ),
                400,
                "invalid JSON",
            ),
            ("priority", c.post("/v1/jobs", json={"path": "ok.wav", "priority": 500}), 422, "prio"),
        ]

        def chunked_multipart() -> Iterator[bytes]:
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            for _ in range(12):  # 3 MiB in 256 KiB chunks, no Content-Length
                yield os.urandom(256 * 1024)
            yield b"\r\n--xyz--\r\n"

        streamed = c.post(
            "/v1/jobs",
            content=chunked_multipart(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert "content-length" not in streamed.request.headers
        cases.append(("too large, streamed", streamed, 413, "too large"))
        for name, resp, code, words in cases:
            assert resp.status_code == code, (name, resp.status_code, resp.text)
            assert words in resp.json()["detail"], (name, resp.text)
        assert httpx.get(f"{svc.url}/healthz").json() == {"status": "ok"}
        # Refused uploads leave nothing behind: only accepted jobs keep their audio.
        assert list((svc.data_dir / "uploads").iterdir()) == []
        jobs = wait_all(c, [good])
        assert jobs[good]["status"] == "completed"
        assert c.get("/v1/jobs").json()["total"] == 1


def test_cancel_events_devices_and_client_commands(tmp_path: Path, services: list[Service]) -> None:
    import subprocess
    import sys

    svc = fake_service(tmp_path, services)
    env = {**os.environ, "VRAMSCRIBE_SERVER": svc.url, "VRAMSCRIBE_TOKEN": TOKEN}

    def cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vramscribe", *args], capture_output=True,
                              text=True, timeout=120, env=env)  # fmt: skip

    short = write_wav(tmp_path / "short.wav", 4.0)
    long = write_wav(tmp_path / "long.wav", 900.0)
    out = cmd("submit", str(short), str(long), "--priority", "high")
    assert out.returncode == 0, out.stderr
    short_id, long_id = [line.split("\t")[0] for line in out.stdout.strip().splitlines()]
    waited = cmd("wait", short_id)
    assert waited.returncode == 0 and "completed" in waited.stdout, waited.stderr
    with svc.client() as c:
        deadline = time.monotonic() + 60
        while c.get(f"/v1/jobs/{long_id}").json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        devices = c.get("/v1/devices").json()["devices"]
        assert devices[0]["id"] == "fake:0" and devices[0]["instances"]
        assert devices[0]["ours_mb"] >= 1100
        cancelled = cmd("cancel", long_id)
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
        # Its worker ends and its memory is confirmed back (the short job's instance may
        # stay loaded, idle, for the service's keep-alive).
        deadline = time.monotonic() + 30
        while any(
            i["job_id"] == long_id for i in c.get("/v1/devices").json()["devices"][0]["instances"]
        ):
            assert time.monotonic() < deadline, "memory of the cancelled job was not released"
            time.sleep(0.2)
        left = c.get("/v1/devices").json()["devices"][0]
        assert all(i["state"] == "idle" for i in left["instances"]), left
        assert left["ours_mb"] <= 1100 * len(left["instances"]), left
        listed = cmd("jobs")
        assert listed.returncode == 0 and short_id in listed.stdout and "cancelled" in listed.stdout
        shown = json.loads(cmd("job", short_id).stdout)
        assert shown["status"] == "completed" and shown["history"][-1]["to"] == "completed"
        with c.stream("GET", f"/v1/jobs/{short_id}/events") as resp:
            lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        assert json.loads(lines[0][6:])["state"] == "completed"
