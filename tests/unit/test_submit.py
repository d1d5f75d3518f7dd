"""Job requests are checked once, and turned into a job, task and record in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_wav
from tests.service_app import fake_config
from vramscribe.core.jobs import JobState
from vramscribe.errors import InvalidRequest, ModelNotAvailable, UnknownModel
from vramscribe.settings import RunSettings, ServiceConfig, default
from vramscribe.store.store import Store
from vramscribe.submit.build import build_job, choose_model
from vramscribe.submit.request import JobRequest, parse_batch_size
from vramscribe.submit.run import Run, open_batch_store, open_run

AUDIO = Path("/in/talk.wav")


def request(**fields: Any) -> JobRequest:
    return JobRequest(**{"input": AUDIO, **fields})


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"priority": 101}, "priority", "priority must be 0-100"),
        ({"priority": -1}, "priority", "priority must be 0-100"),
        ({"compute_type": "int3"}, "compute_type", "compute_type must be one of default"),
        ({"batch_size": 65}, "batch_size", "batch size must be auto or 1-64, got 65"),
        ({"batch_size": -1}, "batch_size", "batch size"),
        ({"beam_size": 0}, "beam_size", "beam size must be 1-20, got 0"),
        ({"beam_size": 21}, "beam_size", "beam size"),
        ({"model": "  "}, "model", "model must not be empty"),
        ({"engine": "whisper.cpp"}, "engine", "engine must be one of faster-whisper, fake"),
        ({"outputs": (("docx", Path("a.docx")),)}, "outputs", "unknown output format 'docx'"),
    ],
)
def test_a_request_out_of_range_names_its_field(
    fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest, match=words) as caught:
        request(**fields)
    assert caught.value.field == field


def test_defaults_are_the_documented_ones() -> None:
    r = request()
    assert (r.model, r.priority, r.compute_type, r.batch_size, r.beam_size) == (
        "tiny.en", 50, "default", 0, 5
    )  # fmt: skip
    assert (r.vad_filter, r.word_timestamps, r.engine, r.outputs) == (
        False, False, "faster-whisper", ()
    )  # fmt: skip
    assert len(r.job_id) == 16 and r.job_id != request().job_id
    assert default(ServiceConfig, "model") == default(JobRequest, "model")
    assert default(ServiceConfig, "run").scheduler.keep_alive_s == 60.0
    assert default(RunSettings, "scheduler").keep_alive_s == 0.0


def test_parse_reads_loose_values_over_the_callers_base() -> None:
    values = {
        "model": "", "priority": "urgent", "batch_size": " AUTO ", "beam_size": "3",
        "vad_filter": "yes", "word_timestamps": False, "language": None, "hotwords": "a, b",
        "colour": "ignored",
    }  # fmt: skip
    r = JobRequest.parse(values, input=AUDIO, model="small", engine="fake")
    assert (r.model, r.priority, r.batch_size, r.beam_size) == ("small", 100, 0, 3)
    assert (r.vad_filter, r.word_timestamps, r.language, r.hotwords) == (True, False, None, "a, b")
    assert JobRequest.parse({"priority": 60.0, "batch_size": 8}, input=AUDIO).priority == 60
    assert JobRequest.parse({"batch_size": 8}, input=AUDIO).batch_size == 8


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"priority": [1]}, "priority must be a name or a number"),
        ({"priority": True}, "priority must be a name or a number"),
        ({"priority": "soonish"}, "priority must be one of low, normal, high, urgent"),
        ({"beam_size": 2.5}, "beam size"),
        ({"batch_size": "8.0"}, "batch size"),
        ({"language": 5}, "language must be a string"),
    ],
)
def test_parse_refuses_what_it_cannot_read(values: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        JobRequest.parse(values, input=AUDIO)


def test_batch_size_reads_auto_and_numbers() -> None:
    assert [parse_batch_size(v) for v in ("auto", "Auto", "0", "1", "64", 8)] == [0, 0, 0, 1, 64, 8]
    for bad in ("65", "-1", "x", ""):
        with pytest.raises(InvalidRequest):
            parse_batch_size(bad)


def test_models_are_resolved_before_anything_is_queued() -> None:
    assert choose_model("small", "fake").profile == "small"
    with pytest.raises(UnknownModel, match="unknown model 'whisper-galaxy'"):
        choose_model("whisper-galaxy", "fake")
    with pytest.raises(ModelNotAvailable, match="unknown model 'whisper-galaxy'"):
        choose_model("whisper-galaxy", "faster-whisper")


def test_build_job_makes_task_and_record_agree() -> None:
    r = request(model="small", engine="fake", priority=75, batch_size=8,
                outputs=(("txt", Path("/out/a.txt")),), filename="a [1].wav")  # fmt: skip
    new = build_job(r, choose_model("small", "fake"), cpu_threads=3, now=10.0, audio_s=42.0)
    job, rec = new.task.job, new.record
    assert rec.id == job.id == r.job_id
    assert (rec.status, rec.priority, rec.audio_s) == (JobState.PENDING, 75, 42.0)
    assert rec.submitted_at == rec.created_at == 10.0
    assert (rec.model, rec.profile, job.model) == ("small", "small", "small")
    assert rec.options == new.task.engine.to_dict() and rec.options["cpu_threads"] == 3
    assert "profile" not in rec.options and "filename" not in rec.options
    assert rec.filename == "a [1].wav" and rec.display_name == "a [1].wav"
    assert rec.outputs == [("txt", "/out/a.txt")]
    assert new.task.outputs == [("txt", Path("/out/a.txt"))]
    again = rec.to_job()
    assert (again.model, again.batch_size, again.compute_type, again.audio_s) == (
        job.model, job.batch_size, job.compute_type, job.audio_s
    )  # fmt: skip


def open_test_run(tmp_path: Path, *, records_bad_input: bool) -> Run:
    device, _ = fake_config(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    settings = RunSettings(device=device)
    return open_run(store, settings, tmp_path, records_bad_input=records_bad_input)


def test_a_batch_records_unreadable_input_as_a_failed_job(tmp_path: Path) -> None:
    run = open_test_run(tmp_path, records_bad_input=True)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    try:
        rec = run.submit(request(input=bad, model="small", engine="fake"))
        stored = run.store.get(rec.id)
        assert stored is not None and stored.status is JobState.FAILED
        assert run.runner.tasks[rec.id].job.state is JobState.FAILED
    finally:
        run.close()


def test_the_service_refuses_unreadable_input_and_stores_nothing(tmp_path: Path) -> None:
    from vramscribe.errors import BadInput

    run = open_test_run(tmp_path, records_bad_input=False)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    try:
        with pytest.raises(BadInput):
            run.submit(request(input=bad, model="small", engine="fake"))
        with pytest.raises(UnknownModel):
            run.submit(request(input=write_wav(tmp_path / "ok.wav", 1.0), model="x", engine="fake"))
        assert run.store.count() == 0 and not run.runner.tasks
    finally:
        run.close()


def test_the_batch_store_takes_in_footprints_an_earlier_version_kept_in_a_file(
    tmp_path: Path,
) -> None:
    from vramscribe.core.footprints import FootprintBook

    book = FootprintBook()
    book.observe_peak(("small", "float16", 1, "cuda"), 1500.0, 60.0)
    (tmp_path / "footprints.json").write_text(book.to_json())
    store, _ = open_batch_store(tmp_path)
    try:
        assert store.load_footprints().to_json() == book.to_json()
        store.save_footprints(FootprintBook())  # a later save wins over the file
    finally:
        store.close()
    again, _ = open_batch_store(tmp_path)
    try:
        assert again.load_footprints().to_json() == FootprintBook().to_json()
    finally:
        again.close()
