"""The service with the real tiny.en engine on the CPU, driven by real clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import openai
import pytest

from tests.acceptance.conftest import TOKEN, Service, start_service
from tests.conftest import SPEECH_AUDIO
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow
JFK = json.loads((SPEECH_AUDIO / "references.json").read_text())["jfk.flac"]["text"]


def wait_done(svc: Service, job_id: str, timeout: float = 180) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with svc.client() as c:
        while time.monotonic() < deadline:
            job: dict[str, object] = c.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            time.sleep(0.3)
    raise AssertionError("job did not finish")


def test_real_clients_against_the_real_engine(tmp_path: Path, services: list[Service]) -> None:
    svc = start_service(tmp_path, "--device", "cpu", "--model", "tiny.en",
                        "--allowed-root", str(SPEECH_AUDIO))  # fmt: skip
    services.append(svc)

    # OpenAI's own client, pointed at the service, unchanged.
    client = openai.OpenAI(base_url=f"{svc.url}/v1", api_key=TOKEN)
    with (SPEECH_AUDIO / "jfk.flac").open("rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert word_error_rate(JFK, result.text) == 0.0
    with (SPEECH_AUDIO / "jfk.flac").open("rb") as fh:
        srt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="srt")
    assert "00:00:00,000 -->" in str(srt)

    # curl, as a shell script would.
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed for this test"
    out = subprocess.run(
        [curl, "-sS", "-H", f"Authorization: Bearer {TOKEN}",
         "-F", f"file=@{SPEECH_AUDIO / 'jfk.flac'}", "-F", "priority=high", f"{svc.url}/v1/jobs"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    job_id = json.loads(out.stdout)["id"]
    assert wait_done(svc, job_id)["status"] == "completed"
    text = subprocess.run(
        [curl, "-sS", "-H", f"Authorization: Bearer {TOKEN}",
         f"{svc.url}/v1/jobs/{job_id}/transcript?format=txt"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert word_error_rate(JFK, text) == 0.0

    # A server-side path under the allowed root, with options.
    with svc.client() as c:
        r = c.post("/v1/jobs", json={"path": "hotwords.mp3", "hotwords": "ComfyUI"})
        assert r.status_code == 201, r.text
        job = wait_done(svc, r.json()["id"])
        assert job["status"] == "completed"
        hinted = c.get(f"/v1/jobs/{job['id']}/transcript").text
        assert "ComfyUI" in hinted
        vtt = c.get(f"/v1/jobs/{job['id']}/transcript", params={"format": "vtt"}).text
        assert vtt.startswith("WEBVTT")
