"""The dashboard workbench's routes, in this process: signed audio URLs, retry, settings."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_wav
from tests.service_app import TOKEN, service_config, serving
from vramscribe.store.store import Store

pytestmark = pytest.mark.anyio


@dataclass
class Api:
    client: httpx.AsyncClient
    root: Path
    data: Path


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("workbench")
    root = (folder / "allowed").resolve()
    write_wav(root / "ok.wav", 3.0)
    config = service_config(folder, allowed_roots=(root,))
    async with serving(config) as client:
        yield Api(client, root, config.data_dir)


async def failed_job(api: Api, audio: bytes, **fields: str) -> dict[str, Any]:
    """An uploaded job; the service's fake GPU is too small, so it fails at once."""
    r = await api.client.post("/v1/jobs", files={"file": ("talk.wav", audio)}, data=fields)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    for _ in range(2000):  # up to 20 s on a busy machine
        job: dict[str, Any] = (await api.client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] == "failed":
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not fail")


def unsigned(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app without the bearer token, as an <audio> element asks."""
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


async def test_the_submit_settings(api: Api) -> None:
    info = (await api.client.get("/v1/workbench")).json()
    assert info == {"model": "small", "formats": ["txt", "srt", "vtt", "tsv", "json"],
                    "allowed_roots": [str(api.root)]}  # fmt: skip


async def test_retry_makes_a_new_job_with_the_same_audio_and_options(api: Api) -> None:
    audio = write_wav(api.root / "retry.wav", 2.0).read_bytes()
    job = await failed_job(api, audio, priority="high", language="de", beam_size="3")
    r = await api.client.post(f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["id"] != job["id"]
    for field in ("model", "priority", "input", "audio_s"):
        assert again[field] == job[field], field
    store = Store.open_data_dir(api.data)
    try:
        record = store.get(again["id"])
    finally:
        store.close()
    assert record is not None and record.filename == "talk.wav"
    assert (record.options["language"], record.options["beam_size"]) == ("de", 3)
    assert (await api.client.post("/v1/jobs/nope/retry")).status_code == 404
    by_path = await api.client.post("/v1/jobs", json={"path": "ok.wav"})
    assert by_path.status_code == 201
    stored = await api.client.get(f"/v1/jobs/{by_path.json()['id']}")
    assert stored.json()["status"] in ("pending", "failed")


async def test_the_audio_url_is_signed_for_one_job_and_answers_ranges(api: Api) -> None:
    audio = write_wav(api.root / "signed.wav", 2.0).read_bytes()
    job = await failed_job(api, audio)
    other = await failed_job(api, audio)
    r = await api.client.get(f"/v1/jobs/{job['id']}/audio-url")
    assert r.status_code == 200
    url, expires = r.json()["url"], r.json()["expires"]
    assert TOKEN not in url and 3500 < expires - time.time() <= 3600
    async with unsigned(api.client) as browser:
        assert (await browser.get(f"/v1/jobs/{job['id']}/audio-url")).status_code == 401
        whole = await browser.get(url)
        assert whole.status_code == 200 and whole.content == audio
        assert whole.headers["accept-ranges"] == "bytes"
        part = await browser.get(url, headers={"Range": "bytes=44-1043"})
        assert part.status_code == 206 and part.content == audio[44:1044]
        assert part.headers["content-range"] == f"bytes 44-1043/{len(audio)}"
        assert (await browser.get(url.replace(job["id"], other["id"]))).status_code == 403
        tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
        assert (await browser.get(tampered)).status_code == 403
        past = int(time.time()) - 1
        sig = hmac.new(TOKEN.encode(), f"{job['id']}:{past}".encode(), hashlib.sha256).hexdigest()
        expired = await browser.get(f"/v1/jobs/{job['id']}/audio?expires={past}&sig={sig}")
        assert expired.status_code == 403 and "expired" in expired.json()["detail"]
        missing = await browser.get(f"/v1/jobs/{job['id']}/audio")
        assert missing.status_code == 422


async def test_the_routes_are_described(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    audio = paths["/v1/jobs/{job_id}/audio"]["get"]["responses"]
    assert {"200", "206", "403", "404", "410", "416"} <= set(audio)
    assert "audio/*" in audio["206"]["content"]
    assert {"201", "404", "409", "410"} <= set(
        paths["/v1/jobs/{job_id}/retry"]["post"]["responses"]
    )
