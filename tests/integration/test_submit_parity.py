"""The CLI and the service submit a job through the same function, and get the same job.

The same request goes in through ``vramscribe transcribe`` (its click command,
in this process) and through ``POST /v1/jobs`` (the app, in this process);
:meth:`Run.submit` (the CLI's) and :meth:`Run.submit_many` (the service's, which
submits concurrent requests together) are watched on their way out. On a fake GPU too small
for the model the planner rejects the job at once, so no worker starts.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import write_wav
from tests.service_app import fake_config, service_config, serving
from vramscribe.cli import main
from vramscribe.outputs import FORMATS
from vramscribe.settings import RunSettings, service_run
from vramscribe.store.records import JobRecord
from vramscribe.submit.request import JobRequest
from vramscribe.submit.run import Run

OPTIONS = {
    "model": "small", "priority": "high", "compute_type": "float16", "batch_size": "8",
    "language": "en", "beam_size": "3", "initial_prompt": "Hello [there].",
    "hotwords": "vramscribe",
}  # fmt: skip


def watch_submissions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[JobRequest, JobRecord]]:
    seen: list[tuple[JobRequest, JobRecord]] = []
    submit = Run.submit

    def watched(self: Run, request: JobRequest, submitted_at: float | None = None) -> JobRecord:
        record = submit(self, request, submitted_at)
        seen.append((request, record))
        return record

    submit_many = Run.submit_many

    def watched_many(self: Run, requests: list[JobRequest]) -> list[JobRecord | Exception]:
        records = submit_many(self, requests)
        seen.extend(
            (q, r) for q, r in zip(requests, records, strict=True) if isinstance(r, JobRecord)
        )
        return records

    monkeypatch.setattr(Run, "submit", watched)
    monkeypatch.setattr(Run, "submit_many", watched_many)
    return seen


def through_the_cli(audio: Path, device: str, fake: dict[str, Any]) -> None:
    args = [f"--{name.replace('_', '-')}={value}" for name, value in OPTIONS.items()]
    args += ["--vad", "--word-timestamps", "--cpu-threads", "2", "--device", device]
    args += [f"--format={fmt}" for fmt in FORMATS]
    args += ["--engine", "fake", "--fake-config", json.dumps(fake)]
    result = CliRunner().invoke(main, ["transcribe", str(audio), *args])
    assert result.exit_code == 1, result.output  # the job can never fit this GPU
    assert "more than any device can offer" in result.output


def through_the_service(folder: Path, root: Path, device: str, fake: dict[str, Any]) -> None:
    run = RunSettings(device=device, cpu_threads=2, scheduler=service_run().scheduler)
    config = service_config(folder, allowed_roots=(root,), run=run, fake_config=fake)
    body = {"path": "talk.wav", **OPTIONS, "vad_filter": True, "word_timestamps": "true"}

    async def post() -> None:
        async with serving(config) as client:
            resp = await client.post("/v1/jobs", json=body)
            assert resp.status_code == 201, resp.text

    asyncio.run(post())


def test_the_cli_and_the_service_submit_the_same_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = watch_submissions(monkeypatch)
    audio = write_wav(tmp_path / "in" / "talk.wav", 3.0)
    device, fake = fake_config(tmp_path)
    through_the_cli(audio, device, fake)
    through_the_service(tmp_path / "service", audio.parent.resolve(), device, fake)
    [(cli_request, cli), (service_request, served)] = seen

    assert cli.model == served.model == "small"
    assert cli.profile == served.profile == "small"
    assert cli.priority == served.priority == 75
    assert cli.options == served.options
    assert cli.options["batch_size"] == 8 and cli.options["cpu_threads"] == 2
    assert cli.options["vad_filter"] is cli.options["word_timestamps"] is True
    assert cli.options["initial_prompt"] == "Hello [there]."
    cli_job, served_job = cli.to_job(), served.to_job()
    for field in ("model", "priority", "compute_type", "batch_size", "audio_s", "state"):
        assert getattr(cli_job, field) == getattr(served_job, field), field
    assert Path(cli.input_path).resolve() == Path(served.input_path)
    assert cli.display_name == served.display_name == "talk.wav"
    assert cli.filename is served.filename is None
    # Outputs: one file per format asked for (the service writes every format).
    assert sorted(fmt for fmt, _ in cli.outputs) == sorted(fmt for fmt, _ in served.outputs)
    assert {Path(p).suffix for _, p in cli.outputs} == {f".{fmt}" for fmt in FORMATS}
    assert cli_request.engine == service_request.engine == "fake"
    assert cli_request.fake == service_request.fake
