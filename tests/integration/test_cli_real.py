"""The real command with the real tiny.en and base models on real speech, on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.conftest import EXAMPLES, SPEECH_AUDIO
from vramscribe.core.jobs import Job, JobState
from vramscribe.devices.cpu import CpuDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.models import resolve_model
from vramscribe.runtime.runner import Runner, Task
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow


def srt_times(text: str, sep: str) -> list[float]:
    out = []
    for h, m, s, ms in re.findall(rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)", text):
        out.append(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000)
    return out


def test_jfk_through_the_cli_is_word_perfect_in_every_format(tmp_path: Path) -> None:
    refs = json.loads((SPEECH_AUDIO / "references.json").read_text())
    reference = refs["jfk.flac"] if isinstance(refs["jfk.flac"], str) else refs["jfk.flac"]["text"]
    out = tmp_path / "out"
    result = run_cli(
        "transcribe", str(SPEECH_AUDIO / "jfk.flac"), "--model", "tiny.en", "--device", "cpu",
        "--out-dir", str(out), "--format", "txt", "--format", "srt", "--format", "vtt",
        "--format", "json", "--word-timestamps",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    txt = (out / "jfk.txt").read_text()
    assert word_error_rate(reference, txt) == 0.0
    srt = (out / "jfk.srt").read_text()
    times = srt_times(srt, ",")
    assert times and times == sorted(times)
    vtt = (out / "jfk.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    vtimes = srt_times(vtt, ".")
    assert vtimes and vtimes == sorted(vtimes)
    data = json.loads((out / "jfk.json").read_text())
    assert data["language"] == "en" and data["model"] == "tiny.en"
    assert abs(data["duration_s"] - 11.0) < 0.2
    assert all(s["start"] <= s["end"] for s in data["segments"])
    assert any(s.get("words") for s in data["segments"])
    # A rerun resumes: everything exists, nothing is redone.
    again = run_cli("transcribe", str(SPEECH_AUDIO / "jfk.flac"), "--device", "cpu",
                    "--out-dir", str(out), "--format", "txt")  # fmt: skip
    assert again.returncode == 0 and "skipping 1 file" in again.stderr


def test_bad_inputs_fail_alone_and_the_rest_is_transcribed(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.flac").write_bytes((SPEECH_AUDIO / "jfk.flac").read_bytes())
    (batch / "empty.wav").write_bytes(b"")
    (batch / "notes.wav").write_text("this is a text file, not audio\n" * 20)
    (batch / "cut.mp3").write_bytes((SPEECH_AUDIO / "multilingual.mp3").read_bytes()[:1500])
    no_audio = tmp_path / "docs"
    no_audio.mkdir()
    (no_audio / "readme.txt").write_text("hello")
    result = run_cli(
        "transcribe", str(batch), str(tmp_path / "missing.wav"), str(no_audio),
        "--device", "cpu", "--format", "txt",
    )  # fmt: skip
    assert result.returncode == 1
    err = result.stderr
    assert "no such file or folder" in err and "missing.wav" in err
    assert "no audio files under" in err
    for name in ("empty.wav", "notes.wav", "cut.mp3"):
        assert re.search(rf"failed.*{re.escape(name)}", err), (name, err)
    assert (batch / "good.txt").exists()
    for name in ("empty", "notes", "cut"):
        assert not (batch / f"{name}.txt").exists()


def test_two_real_models_run_concurrently_in_one_batch(tmp_path: Path) -> None:
    runner = Runner([CpuDevice(threads_per_instance=1)], run_dir=tmp_path / "run")
    for n, (model, name) in enumerate([("tiny.en", "tiny"), ("base", "base")]):
        resolved = resolve_model(model, cache_dir=tmp_path / "models" / model)
        job = Job(str(n), name, audio_s=59.9, compute_type="int8")
        engine = EngineOptions(model=model, model_path=resolved.path, compute_type="int8")
        out = tmp_path / f"{model}.txt"
        runner.add(Task(job, SPEECH_AUDIO / "multilingual.mp3", engine, [("txt", out)]))
    tasks = runner.run()
    assert all(t.job.state is JobState.COMPLETED for t in tasks), [t.job.error for t in tasks]
    spans = []
    for t in tasks:
        begin = next(h.time for h in t.job.history if h.to_state is JobState.PROCESSING)
        end = next(h.time for h in t.job.history if h.to_state is JobState.COMPLETED)
        spans.append((begin, end))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans  # the two transcriptions overlapped in time
    assert "permission is hereby granted" in (tmp_path / "base.txt").read_text().lower()


def test_example_clips_are_transcribed_well(tmp_path: Path) -> None:
    refs = json.loads((EXAMPLES / "references.json").read_text())
    result = run_cli("transcribe", str(EXAMPLES), "--device", "cpu", "--out-dir", str(tmp_path),
                     "--format", "txt")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name, ref in refs.items():
        hyp = (tmp_path / Path(name).with_suffix(".txt")).read_text()
        assert word_error_rate(ref, hyp) <= 0.1, (name, hyp)


def test_hotwords_and_batched_pipeline_reach_the_engine(tmp_path: Path) -> None:
    args = ["transcribe", str(SPEECH_AUDIO / "hotwords.mp3"), "--device", "cpu", "--format", "txt"]
    plain = run_cli(*args, "--out-dir", str(tmp_path / "plain"))
    hinted = run_cli(*args, "--out-dir", str(tmp_path / "hint"), "--hotwords", "ComfyUI",
                     "--batch-size", "4")  # fmt: skip
    assert plain.returncode == 0 and hinted.returncode == 0, hinted.stderr
    assert "ComfyUI" not in (tmp_path / "plain" / "hotwords.txt").read_text()
    assert "ComfyUI" in (tmp_path / "hint" / "hotwords.txt").read_text()


def test_a_long_file_in_the_batched_pipeline_without_vad(tmp_path: Path) -> None:
    """Over 30 s and no VAD: the batched pipeline gets fixed 30 s windows (it refuses a long
    file that has neither), and the text matches the one-window-at-a-time decoder's start."""
    out = tmp_path / "out"
    done = run_cli("transcribe", str(SPEECH_AUDIO / "multilingual.mp3"), "--device", "cpu",
                   "--batch-size", "4", "--format", "txt", "--out-dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (out / "multilingual.txt").read_text().lower()
    assert text.startswith("permission is hereby granted, free of charge"), text[:80]
    assert len(text.split()) > 100  # the windows after the first were transcribed too
