"""A failed attempt late in a file does not start it over: the retry resumes after the
last finished segment and the parts are joined (real worker processes)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import SPEECH_AUDIO, write_wav
from vramscribe.audio import decode_samples
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.cpu import CpuDevice
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.engines.whisper import WhisperEngine
from vramscribe.models import resolve_model
from vramscribe.runtime.events import RunnerEvent, SegmentTranscribed
from vramscribe.runtime.runner import Runner, Task
from vramscribe.transcript import Transcript
from vramscribe.wer import normalise, word_error_rate


def seen_segments(runner: Runner) -> list[tuple[int, float, float]]:
    """(attempt, start, end) of every segment a worker reported."""
    seen: list[tuple[int, float, float]] = []

    def on_event(event: RunnerEvent) -> None:
        if isinstance(event, SegmentTranscribed):
            seen.append((event.task.job.attempts, event.start, event.end))

    runner.listeners.append(on_event)
    return seen


@pytest.mark.parametrize("failure", ["crash", "oom", "hang"])
def test_a_failure_halfway_resumes_after_the_last_finished_segment(
    tmp_path: Path, failure: str
) -> None:
    device = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=8000)
    runner = Runner([device], Settings(safety_margin=0.0, backoff_base_s=0.2),
                    run_dir=tmp_path / "run", poll_s=0.05, hang_timeout_s=2.0)  # fmt: skip
    seen = seen_segments(runner)
    audio = write_wav(tmp_path / "long.wav", 20.0)
    fail = "oom_midway" if failure == "oom" else failure
    cfg = {"device_path": str(device.path), "memory_mb": 1200.0, "speed_x": 10.0,
           "load_s": 0.1, "fail": fail, "fail_attempts": [1]}  # fmt: skip
    engine = EngineOptions(engine="fake", model="small", fake=cfg)
    out = tmp_path / "out" / "long.json"
    task = Task(Job("1", "small", audio_s=20.0, compute_type="float16"), audio, engine,
                [("json", out)])  # fmt: skip
    runner.add(task)
    runner.run()
    assert task.job.state is JobState.COMPLETED, task.job.error
    assert task.job.attempts == 2
    first = [(s, e) for a, s, e in seen if a == 1]
    second = [(s, e) for a, s, e in seen if a == 2]
    assert len(first) == 5  # segments 1-5 of 10 finished before the failure
    resumed_at = first[-1][1]
    # The retry transcribed only the rest of the file.
    assert second and second[0][0] == pytest.approx(resumed_at) and len(second) == 5
    starts = [h.reason for h in task.job.history if h.to_state is JobState.LOADING]
    assert "resuming at 10.0 s after 5 finished segments" in starts[1]
    doc = json.loads(out.read_text())
    assert [s["text"] for s in doc["segments"]] == [f"fake segment {k}" for k in range(1, 11)]
    assert doc["settings"]["resumed_from_s"] == [pytest.approx(resumed_at)]
    assert doc["settings"]["attempts"] == 2 and doc["settings"]["batch_size"] >= 1


def _base_task(tmp_path: Path, name: str) -> Task:
    resolved = resolve_model("base", cache_dir=tmp_path / "models")
    # Language given: base then writes the English part in English and the German part
    # in German (detected as English, the German half comes out as a loose translation
    # that changes with every context, which no comparison could hold to).
    # One temperature: a window that fails the compression or log-prob checks is kept
    # as decoded instead of being sampled again at a higher temperature, which is random
    # and made the text after the joint differ from run to run.
    engine = EngineOptions(
        model="base",
        model_path=resolved.path,
        compute_type="int8",
        language="de",
        decoding={"temperature": [0.0]},
    )
    job = Job(name, "base", audio_s=59.9, compute_type="int8", batch_size=1)
    out = tmp_path / f"{name}.json"
    return Task(job, SPEECH_AUDIO / "multilingual.mp3", engine, [("json", out)])


def _words_around(transcript: Transcript, joint: float) -> tuple[str, str]:
    """The normalised words of the segments before ``joint`` and of those after it."""
    before = " ".join(s.text for s in transcript.segments if s.end <= joint + 1e-6)
    after = " ".join(s.text for s in transcript.segments if s.end > joint + 1e-6)
    return normalise(before), normalise(after)


@pytest.mark.slow
def test_a_real_worker_killed_halfway_resumes_and_the_transcript_matches(
    tmp_path: Path,
) -> None:
    """base on multilingual.mp3 (60 s, two 30 s windows): the worker is killed with
    SIGKILL as soon as it reports the last segment of its first window (the one the
    uninterrupted run ends that window with), while it decodes the second window;
    the retry decodes from the end of the last segment that arrived. Killing at the
    window's end keeps the joint in one place however busy the machine is: a
    window's segments arrive together, and a kill at the first one past 25 s landed
    among them on a busy machine, which moved the joint into the window."""
    settings = Settings(backoff_base_s=0.1)
    whole = Runner([CpuDevice(threads_per_instance=2)], settings, run_dir=tmp_path / "a")
    plain = _base_task(tmp_path, "plain")
    whole.add(plain)
    whole.run()
    assert plain.job.state is JobState.COMPLETED, plain.job.error

    a = Transcript.from_dict(json.loads((tmp_path / "plain.json").read_text()))
    window_end = max(s.end for s in a.segments if s.end <= 30.0)
    assert window_end > 25.0

    runner = Runner([CpuDevice(threads_per_instance=2)], settings, run_dir=tmp_path / "b")
    seen = seen_segments(runner)
    task = _base_task(tmp_path, "killed")

    def kill_after_first_window(event: RunnerEvent) -> None:
        first_window_done = isinstance(event, SegmentTranscribed) and event.end >= window_end
        if first_window_done and task.job.attempts == 1:
            assert task.worker_pid is not None
            os.kill(task.worker_pid, signal.SIGKILL)

    runner.listeners.insert(0, kill_after_first_window)
    runner.add(task)
    runner.run()
    assert task.job.state is JobState.COMPLETED, task.job.error
    assert task.job.attempts == 2
    joint = task.resumed_from_s[0]
    assert 0 < joint < 59.9
    assert all(start >= joint - 1e-6 for a, start, _ in seen if a == 2)
    starts = [h.reason for h in task.job.history if h.to_state is JobState.LOADING]
    # Segments a worker has written before the kill lands still arrive: one or more.
    count = task.kept_before
    assert count >= 1
    assert f"resuming at {joint:.1f} s after {count} finished segment" in starts[1]

    b = Transcript.from_dict(json.loads((tmp_path / "killed.json").read_text()))
    assert b.settings["resumed_from_s"] == [pytest.approx(joint)]
    assert b.language == a.language == "de"
    # Before the joint: the very segments of the uninterrupted run.
    kept = [s for s in b.segments if s.end <= joint]
    assert kept == [s for s in a.segments if s.end <= joint]
    # After it: the rest of the file again, timestamps from the file's start.
    assert b.segments[-1].end > 55.0
    ends = [s.end for s in b.segments]
    assert ends == sorted(ends)
    # Before the joint the words are the uninterrupted run's exactly; after it, decoded
    # again from a window that starts elsewhere, nearly so (segments are cut differently,
    # so the words are compared as one text, not segment by segment).
    before_a, after_a = _words_around(a, joint)
    before_b, after_b = _words_around(b, joint)
    assert before_a == before_b
    assert len(after_a.split()) > 30
    assert word_error_rate(after_a, after_b) <= 0.25, (after_a, after_b)
    assert word_error_rate(a.text, b.text) <= 0.1


@pytest.fixture(scope="module")
def base_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[WhisperEngine, EngineOptions]:
    resolved = resolve_model("base", cache_dir=tmp_path_factory.mktemp("models"))
    options = EngineOptions(model="base", model_path=resolved.path, compute_type="int8",
                            language="de", cpu_threads=2)  # fmt: skip
    engine = WhisperEngine(options)
    engine.load()
    return engine, options


@pytest.mark.slow
@pytest.mark.parametrize(("batch", "vad"), [(1, False), (1, True), (2, False), (2, True)])
def test_the_engine_resumes_in_every_decoding_mode(
    base_engine: tuple[WhisperEngine, EngineOptions], batch: int, vad: bool
) -> None:
    """Without VAD faster-whisper decodes from ``clip_timestamps`` (the batched pipeline
    from windows starting there); with VAD, which clip timestamps would switch off, the
    samples are cut and the timestamps shifted. Either way the timestamps count from the
    file's start and the words are those an uninterrupted run finds there."""
    engine, options = base_engine
    options = dataclasses.replace(options, batch_size=batch, vad_filter=vad)
    samples = decode_samples(SPEECH_AUDIO / "multilingual.mp3")
    full = engine.transcribe(samples, options, 1, lambda _: None, lambda _s, _l: None)
    part = engine.transcribe(samples, options, 1, lambda _: None, lambda _s, _l: None, 36.0)
    assert part.segments and min(s.start for s in part.segments) >= 36.0 - 1e-6
    assert part.segments[-1].end > 55.0 and part.duration_s == pytest.approx(59.9, abs=0.1)
    resumed = normalise(part.text).split()
    tail = normalise(full.text).split()[-len(resumed) :]
    assert len(resumed) > 25 and word_error_rate(" ".join(tail), " ".join(resumed)) <= 0.25
