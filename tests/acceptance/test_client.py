"""``vramscribe.Client`` against the running service, with the real tiny.en model on the CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vramscribe
from tests.acceptance.conftest import TOKEN, Service, start_service
from tests.conftest import SPEECH_AUDIO
from vramscribe.client import ServiceError
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow
JFK = json.loads((SPEECH_AUDIO / "references.json").read_text())["jfk.flac"]["text"]


def test_the_client_does_remotely_what_transcribe_does_here(
    tmp_path: Path, services: list[Service]
) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    shutil.copy(SPEECH_AUDIO / "hotwords.mp3", served / "hotwords.mp3")
    svc = start_service(tmp_path, "--device", "cpu", "--model", "tiny.en",
                        "--allowed-root", str(served), "--max-instances", "1")  # fmt: skip
    services.append(svc)
    with vramscribe.Client(svc.url, TOKEN) as client:
        [result] = client.transcribe([SPEECH_AUDIO / "jfk.flac"], language="en")
        assert result.ok and result.language == "en" and result.error is None
        assert word_error_rate(JFK, result.text) == 0.0
        assert result.segments and result.segments[-1].end <= 11.1

        by_path = client.submit_path(served / "hotwords.mp3", hotwords="ComfyUI")
        waiting = client.submit(SPEECH_AUDIO / "jfk.flac", priority="low")
        assert client.cancel(waiting["id"])["status"] == "cancelled"
        done = client.result(by_path["id"], timeout=300)
        assert done.ok and "ComfyUI" in done.text
        cancelled = client.result(waiting["id"])
        assert cancelled.state == "cancelled" and cancelled.error and not cancelled.ok

        assert client.wait(result.job_id)["status"] == "completed"
        assert client.jobs(status="completed")["total"] == 2
        with pytest.raises(ServiceError, match="403"):
            client.submit_path(tmp_path / "elsewhere.wav")
        with pytest.raises(ServiceError, match="400"):
            client.submit(SPEECH_AUDIO / "jfk.flac", model="no-such-model")
    with pytest.raises(ServiceError, match="401"), vramscribe.Client(svc.url, "wrong") as client:
        client.jobs()
