"""Every way a request to the service can be refused, in this process, in milliseconds.

One app serves the whole module (its lifespan starts and stops the scheduler);
each case sends one request through httpx's ASGI transport and checks the
status code and the words of the message. The subprocess tests keep what needs
a real server: kill -9, graceful stops, the real engine.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_wav
from tests.service_app import TOKEN, service_config, serving

pytestmark = pytest.mark.anyio


@dataclass
class Api:
    client: httpx.AsyncClient
    root: Path
    outside: Path
    data: Path


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("service")
    root = folder / "allowed"
    write_wav(root / "ok.wav", 4.0)
    outside = write_wav(folder / "secret.wav", 4.0)
    (root / "escape.wav").symlink_to(outside)
    (root / "notes.wav").write_bytes(b"hello, not audio\n" * 50)
    config = service_config(folder, allowed_roots=(root.resolve(),))
    async with serving(config) as client:
        yield Api(client, root, outside, config.data_dir)


def upload(content: bytes, name: str = "clip.wav", **fields: str) -> dict[str, Any]:
    return {"files": {"file": (name, content)}, "data": fields}


async def chunked(total: int) -> AsyncIterator[bytes]:
    """A multipart body sent in chunks, with no Content-Length."""
    yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    for _ in range(total // (256 * 1024)):
        yield os.urandom(256 * 1024)
    yield b"\r\n--xyz--\r\n"


NOT_AUDIO = b"hello, not audio\n" * 50
MULTIPART = {"content-type": "multipart/form-data; boundary=xyz"}

# name, method, path, request arguments, expected status, words in the detail
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("dotdot", "POST", "/v1/jobs", {"json": {"path": "../secret.wav"}}, 400, ".."),
    ("symlink escape", "POST", "/v1/jobs", {"json": {"path": "escape.wav"}}, 403, "outside"),
    ("missing file", "POST", "/v1/jobs", {"json": {"path": "nope.wav"}}, 404, "no such file"),
    ("empty path", "POST", "/v1/jobs", {"json": {"path": ""}}, 400, "non-empty"),
    ("nul in path", "POST", "/v1/jobs", {"json": {"path": "a\0b"}}, 400, "non-empty"),
    ("not audio, by path", "POST", "/v1/jobs", {"json": {"path": "notes.wav"}}, 415,
     "not usable audio"),
    ("too large", "POST", "/v1/jobs", upload(os.urandom(2 * 1024 * 1024)), 413, "too large"),
    ("too large, streamed", "POST", "/v1/jobs",
     {"content": chunked(3 * 1024 * 1024), "headers": MULTIPART}, 413, "too large"),
    ("not audio", "POST", "/v1/jobs", upload(NOT_AUDIO, "notes.wav"), 415, "not usable audio"),
    ("unknown model", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "model": "whisper-galaxy"}},
     400, "unknown model 'whisper-galaxy'"),
    ("unknown model, upload", "POST", "/v1/jobs",
     upload(NOT_AUDIO, model="whisper-galaxy"), 400, "unknown model"),
    ("invalid JSON", "POST", "/v1/jobs",
     {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "invalid JSON"),
    ("JSON not an object", "POST", "/v1/jobs", {"json": ["ok.wav"]}, 422, 'string "path"'),
    ("JSON without a path", "POST", "/v1/jobs", {"json": {"model": "small"}}, 422,
     'string "path"'),
    ("path not a string", "POST", "/v1/jobs", {"json": {"path": 7}}, 422, 'string "path"'),
    ("unknown fields", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "b": 1, "a": 2}}, 422,
     "unknown fields: a, b"),
    ("priority 500", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "priority": 500}}, 422,
     "priority must be 0-100"),
    ("priority name", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "priority": "soon"}}, 422,
     "priority must be one of"),
    ("priority, upload", "POST", "/v1/jobs", upload(NOT_AUDIO, priority="101"), 422,
     "priority"),
    ("batch_size 65", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "batch_size": 65}}, 422,
     "batch size must be auto or 1-64"),
    ("batch_size word", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "batch_size": "big"}},
     422, "batch size"),
    ("batch_size, upload", "POST", "/v1/jobs", upload(NOT_AUDIO, batch_size="-1"), 422,
     "batch size"),
    ("beam_size 0", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "beam_size": 0}}, 422,
     "beam size must be 1-20"),
    ("beam_size 21", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "beam_size": "21"}}, 422,
     "beam size"),
    ("beam_size word", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "beam_size": "wide"}},
     422, "beam size"),
    ("compute_type", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "compute_type": "int3"}},
     422, "compute_type must be one of"),
    ("language not text", "POST", "/v1/jobs", {"json": {"path": "ok.wav", "language": 5}}, 422,
     "language must be a string"),
    ("no file field", "POST", "/v1/jobs", {"files": {"other": ("a.wav", b"x")}}, 422,
     "multipart field 'file'"),
    ("wrong content type", "POST", "/v1/jobs",
     {"content": b"ok.wav", "headers": {"content-type": "text/plain"}}, 415,
     "send multipart/form-data"),
    ("unknown job", "GET", "/v1/jobs/doesnotexist", {}, 404, "no job doesnotexist"),
    ("cancel unknown job", "DELETE", "/v1/jobs/doesnotexist", {}, 404, "no job"),
    ("transcript of unknown job", "GET", "/v1/jobs/doesnotexist/transcript", {}, 404, "no job"),
    ("events of unknown job", "GET", "/v1/jobs/doesnotexist/events", {}, 404, "no job"),
    ("openai format", "POST", "/v1/audio/transcriptions",
     upload(NOT_AUDIO, response_format="docx"), 400, "response_format 'docx'"),
    ("openai not audio", "POST", "/v1/audio/transcriptions", upload(NOT_AUDIO), 415,
     "not usable audio"),
    ("openai unknown model", "POST", "/v1/audio/transcriptions",
     upload(NOT_AUDIO, model="whisper-galaxy"), 400, "unknown model"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "path", "kwargs", "status", "words"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_a_bad_request_gets_a_clear_4xx(
    api: Api, name: str, method: str, path: str, kwargs: dict[str, Any], status: int, words: str
) -> None:
    before = set((api.data / "uploads").iterdir())
    resp = await api.client.request(method, path, **kwargs)
    assert resp.status_code == status, (name, resp.text)
    assert words in resp.json()["detail"], (name, resp.text)
    # Refused uploads leave nothing behind: only accepted jobs keep their audio.
    assert set((api.data / "uploads").iterdir()) == before


async def test_an_absolute_path_outside_the_roots_is_forbidden(api: Api) -> None:
    resp = await api.client.post("/v1/jobs", json={"path": str(api.outside)})
    assert resp.status_code == 403 and "outside" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("token", "words"), [(None, "missing bearer token"), ("nope", "wrong token")]
)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/devices", "/metrics", "/v1/events", "/docs"])
async def test_every_api_endpoint_needs_the_token(
    api: Api, path: str, token: str | None, words: str
) -> None:
    headers = {"Authorization": f"Bearer {token}" if token else ""}
    resp = await api.client.get(path, headers=headers)
    assert resp.status_code == 401 and resp.json()["detail"] == words
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_the_token_may_come_in_the_query_for_browsers(api: Api) -> None:
    resp = await api.client.get(
        "/v1/devices", params={"token": TOKEN}, headers={"Authorization": ""}
    )
    assert resp.status_code == 200 and isinstance(resp.json()["devices"], list)


async def test_health_and_the_dashboard_need_no_token(api: Api) -> None:
    bare = {"Authorization": ""}
    assert (await api.client.get("/healthz", headers=bare)).json() == {"status": "ok"}
    assert (await api.client.get("/readyz", headers=bare)).json() == {"status": "ready"}
    page = await api.client.get("/", headers=bare)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/jobs", {"limit": 0}),
        ("/v1/jobs", {"limit": 1001}),
        ("/v1/jobs", {"offset": -1}),
        ("/v1/jobs", {"status": "sleeping"}),
        ("/v1/jobs/x/transcript", {"format": "docx"}),
    ],
)
async def test_bad_query_parameters_are_422(api: Api, path: str, params: dict[str, Any]) -> None:
    assert (await api.client.get(path, params=params)).status_code == 422


async def test_an_accepted_job_that_can_never_fit_fails_and_has_no_transcript(api: Api) -> None:
    resp = await api.client.post(
        "/v1/jobs", json={"path": "ok.wav", "priority": "high", "batch_size": "auto"}
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert (job["status"], job["model"], job["priority"], job["input"]) == (
        "pending", "small", 75, "ok.wav"
    )  # fmt: skip
    assert "timings" not in job
    for _ in range(2000):  # up to 20 s on a busy machine
        job = (await api.client.get(f"/v1/jobs/{job['id']}")).json()
        if job["status"] == "failed":
            break
        await asyncio.sleep(0.01)
    assert job["status"] == "failed" and "more than any device" in job["error"], job
    assert [h["to"] for h in job["history"]] == ["failed"] and "from" in job["history"][0]
    resp = await api.client.get(f"/v1/jobs/{job['id']}/transcript")
    assert resp.status_code == 409 and "is failed; no transcript yet" in resp.json()["detail"]
    cancelled = await api.client.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 409 and "already failed" in cancelled.json()["detail"]
    # The list is read from the store, which the scheduler writes just after the job's
    # live state changes: give it that moment on a busy machine.
    for _ in range(200):
        listed = (await api.client.get("/v1/jobs", params={"status": "failed"})).json()
        if listed["total"]:
            break
        await asyncio.sleep(0.01)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["total"] == 1
    async with api.client.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
        lines = [line async for line in events.aiter_lines() if line.startswith("data: ")]
    assert json.loads(lines[0][6:])["state"] == "failed"


async def test_an_upload_keeps_the_name_it_was_sent_under(api: Api, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "talk [draft].wav", 2.0)
    resp = await api.client.post("/v1/jobs", files={"file": (wav.name, wav.read_bytes())})
    assert resp.status_code == 201, resp.text
    assert resp.json()["input"] == "talk [draft].wav"


async def test_the_api_documents_every_endpoint(api: Api) -> None:
    paths = set((await api.client.get("/openapi.json")).json()["paths"])
    assert paths == {
        "/healthz", "/readyz", "/metrics", "/v1/devices", "/v1/events", "/v1/jobs",
        "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/transcript",
        "/v1/audio/transcriptions", "/v1/workbench", "/v1/jobs/{job_id}/retry",
        "/v1/jobs/{job_id}/audio-url", "/v1/jobs/{job_id}/audio", "/v1/batches",
    }  # fmt: skip
    assert (await api.client.get("/docs")).status_code == 200


async def test_a_huge_offset_is_refused_with_422_not_a_server_error(api: Api) -> None:
    resp = await api.client.get("/v1/jobs", params={"offset": "1" * 25})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_405_lists_every_method_of_the_path(api: Api) -> None:
    resp = await api.client.patch("/v1/jobs/abc")
    assert resp.status_code == 405 and resp.headers["allow"] == "DELETE, GET"
    resp = await api.client.put("/v1/jobs")
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, POST"


async def test_purge_erases_a_finished_jobs_audio_outputs_and_record(
    api: Api, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "purge-me.wav", 2.0)
    job = (await api.client.post("/v1/jobs", files={"file": (wav.name, wav.read_bytes())})).json()
    uploads = set((api.data / "uploads").iterdir())
    assert any(job["id"] not in p.name for p in uploads)
    for _ in range(2000):  # up to 20 s on a busy machine
        job = (await api.client.get(f"/v1/jobs/{job['id']}")).json()
        if job["status"] == "failed":
            break
        await asyncio.sleep(0.01)
    (api.data / "transcripts" / f"{job['id']}.txt").write_text("left by a finished job")
    purged = await api.client.delete(f"/v1/jobs/{job['id']}", params={"purge": "true"})
    assert purged.status_code == 200 and purged.json()["id"] == job["id"], purged.text
    assert (await api.client.get(f"/v1/jobs/{job['id']}")).status_code == 404
    assert not (api.data / "transcripts" / f"{job['id']}.txt").exists()
    assert len(set((api.data / "uploads").iterdir())) == len(uploads) - 1
    assert (await api.client.delete(f"/v1/jobs/{job['id']}")).status_code == 404


async def test_a_batch_of_uploads_answers_per_file_and_a_bad_file_fails_alone(
    api: Api, tmp_path: Path
) -> None:
    good = [write_wav(tmp_path / f"part{i}.wav", 1.0 + i) for i in range(3)]
    files = [("file", (p.name, p.read_bytes())) for p in good[:2]]
    files.insert(1, ("file", ("notes.wav", NOT_AUDIO)))
    files.append(("file", (good[2].name, good[2].read_bytes())))
    before = set((api.data / "uploads").iterdir())
    resp = await api.client.post("/v1/batches", files=files, data={"priority": "high"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["accepted"], body["refused"]) == (3, 1)
    statuses = [(r["input"], r["status"]) for r in body["results"]]
    assert statuses == [("part0.wav", 201), ("notes.wav", 415), ("part1.wav", 201),
                        ("part2.wav", 201)]  # fmt: skip
    assert "not usable audio" in body["results"][1]["error"]
    jobs = [r["job"] for r in body["results"] if r["status"] == 201]
    assert [j["priority"] for j in jobs] == [75, 75, 75]
    assert [j["audio_s"] for j in jobs] == [1.0, 2.0, 3.0]
    for job in jobs:
        assert (await api.client.get(f"/v1/jobs/{job['id']}")).status_code == 200
    # The refused file's upload is gone; the accepted ones are kept.
    assert len(set((api.data / "uploads").iterdir()) - before) == 3


async def test_a_batch_of_paths_answers_per_path(api: Api) -> None:
    resp = await api.client.post(
        "/v1/batches", json={"paths": ["ok.wav", "missing.wav", "../secret.wav", "notes.wav"]}
    )
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["results"]] == [201, 404, 400, 415]
    assert resp.json()["results"][0]["job"]["input"] == "ok.wav"
    assert (await api.client.post("/v1/batches", json={"paths": []})).status_code == 422
    bad = await api.client.post("/v1/batches", json={"paths": ["ok.wav"], "beam_size": 99})
    assert bad.status_code == 422 and "beam size must be 1-20" in bad.json()["detail"]


async def test_a_batch_where_every_file_is_refused_fails_with_their_reason(api: Api) -> None:
    files = [("file", ("a.wav", NOT_AUDIO)), ("file", ("b.wav", NOT_AUDIO))]
    resp = await api.client.post("/v1/batches", files=files)
    assert resp.status_code == 415 and resp.json()["refused"] == 2, resp.text
    mixed = await api.client.post("/v1/batches", json={"paths": ["missing.wav", "notes.wav"]})
    assert mixed.status_code == 400
    assert [r["status"] for r in mixed.json()["results"]] == [404, 415]
    twice = await api.client.post("/v1/batches", files=files, data={"priority": ["high", "low"]})
    assert twice.status_code == 422 and "priority: give it once" in twice.json()["detail"]


async def test_concurrent_submissions_each_get_their_own_answer(api: Api, tmp_path: Path) -> None:
    """Submissions that arrive together are stored together (one thread, one transaction
    per group), yet each request is answered for its own file: a bad one fails alone."""
    good = [write_wav(tmp_path / f"c{i}.wav", 1.0 + i) for i in range(8)]
    before = set((api.data / "uploads").iterdir())

    async def send(i: int) -> httpx.Response:
        if i % 3 == 2:
            return await api.client.post("/v1/jobs", **upload(NOT_AUDIO, f"bad{i}.wav"))
        if i % 3 == 1:
            return await api.client.post("/v1/jobs", json={"path": "ok.wav", "priority": "low"})
        path = good[i]
        return await api.client.post("/v1/jobs", **upload(path.read_bytes(), path.name))

    answers = await asyncio.gather(*(send(i) for i in range(8)))
    assert [r.status_code for r in answers] == [201, 201, 415, 201, 201, 415, 201, 201]
    accepted = [r.json() for r in answers if r.status_code == 201]
    assert len({job["id"] for job in accepted}) == 6
    assert [job["audio_s"] for job in accepted] == [1.0, 4.0, 4.0, 4.0, 7.0, 4.0]
    assert [job["input"] for job in accepted] == ["c0.wav", "ok.wav", "c3.wav", "ok.wav",
                                                   "c6.wav", "ok.wav"]  # fmt: skip
    assert all("not usable audio" in r.json()["detail"] for r in answers if r.status_code == 415)
    for job in accepted:
        stored = (await api.client.get(f"/v1/jobs/{job['id']}")).json()
        assert (stored["id"], stored["input"]) == (job["id"], job["input"])
    assert len(set((api.data / "uploads").iterdir()) - before) == 3  # refused uploads gone
