"""The metrics endpoint, parsed with prometheus_client's own parser, agrees with the store."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import Service, start_service
from tests.conftest import write_wav
from vramscribe.devices.shared_fake import SharedFakeDevice


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_match_the_store(tmp_path: Path, services: list[Service]) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=6000, foreign_mb=1000)
    cfg = {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 8.0, "load_s": 0.3,
           "fail": "crash", "fail_attempts": [1]}  # fmt: skip
    # No keep-alive: every instance's release is confirmed right after its last job.
    svc = start_service(tmp_path, "--device", f"fake:{gpu.path}", "--model", "small",
                        "--keep-alive", "0", fake=cfg)  # fmt: skip
    services.append(svc)
    with svc.client() as c:
        assert svc.client(None).get("/metrics").status_code == 401
        ids = []
        for n in range(3):
            wav = write_wav(tmp_path / f"c{n}.wav", 6.0)
            with wav.open("rb") as fh:
                ids.append(c.post("/v1/jobs", files={"file": (wav.name, fh)}).json()["id"])
        deadline = time.monotonic() + 120
        while c.get("/v1/jobs", params={"status": "completed"}).json()["total"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        dev = ("device", "fake:0")
        released = ("vramscribe_release_seconds_count", (dev,))
        m = scrape(c)
        while m.get(released, 0) < 6:  # the last releases are confirmed just after completion
            assert time.monotonic() < deadline, m.get(released)
            time.sleep(0.2)
            m = scrape(c)
        completed = c.get("/v1/jobs", params={"status": "completed"}).json()["total"]
        assert m[("vramscribe_jobs", (("model", "small"), ("status", "completed")))] == completed
        assert m[("vramscribe_device_memory_bytes", (dev, ("kind", "total")))] == 6000 * 1024**2
        assert m[("vramscribe_device_memory_bytes", (dev, ("kind", "others")))] == 1000 * 1024**2
        assert m[("vramscribe_retries_total", (("kind", "crash"),))] == 3
        loads = m[("vramscribe_model_load_seconds_count", (dev, ("model", "small")))]
        assert loads == 6  # each job loaded twice: the crashed attempt and the retry
        assert m[("vramscribe_wait_seconds_count", (("model", "small"),))] == 3
        assert m[("vramscribe_transcription_speed_ratio_count", (("model", "small"),))] == 3
        assert m[("vramscribe_release_seconds_count", (dev,))] == 6
        assert ("vramscribe_oom_events_total", (dev,)) not in m or (
            m[("vramscribe_oom_events_total", (dev,))] == 0
        )
