"""--split-channels: one child job per channel, merged by time with a speaker label each.

A stereo file is made here from two different real speech clips that overlap in
time; the real tiny.en model transcribes it on the CPU. The service and a failing
channel are shown with the fake engine on a shared fake GPU.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli import transcribe_on_cpu
from tests.conftest import SPEECH_AUDIO
from tests.integration.test_whisper_options_real import write_pcm
from tests.service_app import fake_config, service_config, serving
from vramscribe.audio import SAMPLE_RATE, decode_samples
from vramscribe.settings import RunSettings, ServiceConfig, service_run
from vramscribe.wer import word_error_rate

REFS = json.loads((SPEECH_AUDIO / "references.json").read_text())
JFK_TEXT = REFS["jfk.flac"]["text"]
LICENCE_TEXT = REFS["multilingual.mp3"]["text_prefix"]
LICENCE_S = 14.0
"""The licence clip: the first seconds of multilingual.mp3 (English)."""
OFFSET_S = 1.0
"""The licence starts 1 s after the speech on channel 1: the two overlap for 10 s."""


def clips(folder: Path) -> tuple[Path, Path, Path]:
    """Each clip alone (mono), and both on the two channels of one stereo file."""
    jfk = decode_samples(SPEECH_AUDIO / "jfk.flac")
    licence = decode_samples(SPEECH_AUDIO / "multilingual.mp3")[: int(LICENCE_S * SAMPLE_RATE)]
    offset = int(OFFSET_S * SAMPLE_RATE)
    stereo = np.zeros((max(len(jfk), offset + len(licence)), 2), dtype=np.float32)
    stereo[: len(jfk), 0] = jfk
    stereo[offset : offset + len(licence), 1] = licence
    alone = folder / "alone"
    alone.mkdir(parents=True)
    return (
        write_pcm(alone / "jfk.wav", jfk),
        write_pcm(alone / "licence.wav", licence),
        write_pcm(folder / "call.wav", stereo),
    )


def head(text: str, reference: str) -> str:
    """As many words of ``text`` as the reference has (the licence's reference is a prefix)."""
    return " ".join(text.split()[: len(reference.split())])


@pytest.mark.slow
def test_both_speakers_come_out_under_their_labels_in_every_format(tmp_path: Path) -> None:
    jfk, _, call = clips(tmp_path)
    alone = transcribe_on_cpu(str(jfk.parent), "-o", str(tmp_path / "alone-out"), "-f", "txt")
    assert alone.returncode == 0, alone.stderr
    jfk_alone = (tmp_path / "alone-out" / "jfk.txt").read_text()
    licence_alone = (tmp_path / "alone-out" / "licence.txt").read_text()

    split = transcribe_on_cpu(
        str(call), "-o", str(tmp_path / "out"), "-f", "all",
        "--split-channels", "--channel-names", "kennedy,licence",
    )  # fmt: skip
    assert split.returncode == 0, split.stderr
    data = json.loads((tmp_path / "out" / "call.json").read_text())
    said: dict[str, str] = {}
    for seg in data["segments"]:
        said[seg["speaker"]] = f"{said.get(seg['speaker'], '')} {seg['text']}"
    assert set(said) == {"kennedy", "licence"}
    starts = [s["start"] for s in data["segments"]]
    assert starts == sorted(starts)  # merged by time
    assert word_error_rate(JFK_TEXT, said["kennedy"]) <= word_error_rate(JFK_TEXT, jfk_alone) + 0.05
    assert word_error_rate(LICENCE_TEXT, head(said["licence"], LICENCE_TEXT)) <= (
        word_error_rate(LICENCE_TEXT, head(licence_alone, LICENCE_TEXT)) + 0.05
    )
    for fmt in ("txt", "srt", "vtt", "tsv"):
        text = (tmp_path / "out" / f"call.{fmt}").read_text()
        assert "[kennedy]: " in text and "[licence]: " in text, fmt
    txt = (tmp_path / "out" / "call.txt").read_text().splitlines()
    assert all(line.startswith(("[kennedy]: ", "[licence]: ")) for line in txt)


def stereo_wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(b"\0\0\0\0" * int(seconds * SAMPLE_RATE))
    return path


async def wait_final(client: Any, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def split_service(folder: Path, root: Path, **fake_extra: Any) -> ServiceConfig:
    """The service with the fake engine on a shared fake GPU with room for both channels."""
    (folder / "gpu").mkdir(parents=True, exist_ok=True)
    device, fake = fake_config(folder / "gpu", total_mb=16000)
    return service_config(
        folder, allowed_roots=(root.resolve(),), fake_config={**fake, **fake_extra},
        run=RunSettings(device=device, scheduler=service_run().scheduler),
    )  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_service_returns_the_parent_and_merges_its_channels(
    tmp_path: Path, anyio_backend: str
) -> None:
    root = tmp_path / "allowed"
    stereo_wav(root / "call.wav", 4.0)
    async with serving(split_service(tmp_path, root)) as client:
        ok = await client.post(
            "/v1/jobs", json={"path": "call.wav", "split_channels": True,
                              "channel_names": "agent,customer"},
        )  # fmt: skip
        assert ok.status_code == 201, ok.text
        parent = await wait_final(client, ok.json()["id"])
        assert parent["status"] == "completed", parent
        assert "merged 2 channels (agent, customer)" in parent["history"][-1]["reason"]
        text = (await client.get(f"/v1/jobs/{parent['id']}/transcript",
                                 params={"format": "txt"})).text  # fmt: skip
        assert "[agent]: fake segment 1" in text and "[customer]: fake segment 1" in text


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_failing_channel_fails_the_parent_and_finished_channels_are_kept(
    tmp_path: Path, anyio_backend: str
) -> None:
    root = tmp_path / "allowed"
    stereo_wav(root / "call.wav", 4.0)
    config = split_service(tmp_path, root, fail="load_error", fail_channels=[1])
    async with serving(config) as client:
        bad = await client.post("/v1/jobs", json={"path": "call.wav", "split_channels": "true"})
        assert bad.status_code == 201, bad.text
        parent = await wait_final(client, bad.json()["id"])
        assert parent["status"] == "failed"
        assert parent["error"].startswith("channel 2 failed: load_error"), parent["error"]
        listed = (await client.get("/v1/jobs", params={"limit": 10})).json()["jobs"]
        children = {j["id"]: j for j in listed if j["id"] != parent["id"]}
        statuses = [(await wait_final(client, i))["status"] for i in children]
        assert sorted(statuses) == ["completed", "failed"]
        kept = parent["error"].split("finished channels: ")[1].rstrip(")")
        if kept != "none":  # the other channel had finished first: its transcript is kept
            assert json.loads(Path(kept).read_text())["segments"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cancelling_the_parent_cancels_its_channels(
    tmp_path: Path, anyio_backend: str
) -> None:
    root = tmp_path / "allowed"
    stereo_wav(root / "call.wav", 60.0)
    async with serving(split_service(tmp_path, root, speed_x=1.0)) as client:
        sent = await client.post("/v1/jobs", json={"path": "call.wav", "split_channels": True})
        assert sent.status_code == 201, sent.text
        parent_id = sent.json()["id"]
        for _ in range(400):  # until a channel runs
            if (await client.get(f"/v1/jobs/{parent_id}")).json()["status"] == "processing":
                break
            await asyncio.sleep(0.05)
        gone = await client.delete(f"/v1/jobs/{parent_id}")
        assert gone.status_code == 200, gone.text
        parent = await wait_final(client, parent_id)
        assert parent["status"] == "cancelled"
        listed = (await client.get("/v1/jobs", params={"limit": 10})).json()["jobs"]
        children = [j["id"] for j in listed if j["id"] != parent_id]
        assert len(children) == 2
        assert [(await wait_final(client, i))["status"] for i in children] == ["cancelled"] * 2
