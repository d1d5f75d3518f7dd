"""Outputs that lose nothing, with the real tiny.en model on real speech, on the CPU.

Same-stem inputs each keep their own transcript; reruns redo only what changed;
an output folder that cannot be written (a real full tmpfs, a real read-only
mount) keeps the finished transcripts, and a rerun writes them without a model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import reference_text, transcribe_on_cpu
from tests.conftest import SPEECH_AUDIO
from vramscribe.core.jobs import JobState
from vramscribe.store.store import Store
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow

JFK_TEXT = reference_text("jfk.flac")


def data_dir() -> Path:
    return Path(os.environ["VRAMSCRIBE_DATA"])


def newest_run() -> Path:
    return max((data_dir() / "runs").iterdir(), key=lambda p: p.name)


def workers_started(run: Path) -> int:
    """Worker processes a run started (each writes its own log)."""
    return len(list(run.glob("worker-*.log")))


def stored_jobs() -> list:
    with Store(f"sqlite:///{data_dir() / 'batch.db'}") as store:
        return store.list(limit=100)


def test_same_stem_inputs_each_get_their_own_transcript_and_reruns_redo_only_changes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "talks"
    folder.mkdir()
    shutil.copy(SPEECH_AUDIO / "jfk.flac", folder / "talk.flac")
    shutil.copy(SPEECH_AUDIO / "hotwords.mp3", folder / "talk.mp3")
    first = transcribe_on_cpu(str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("share a name with another input") == 1
    assert not (folder / "talk.txt").exists()
    assert word_error_rate(JFK_TEXT, (folder / "talk.flac.txt").read_text()) <= 0.05
    assert "comfy" in (folder / "talk.mp3.txt").read_text().lower()
    assert "ask not" not in (folder / "talk.mp3.txt").read_text().lower()

    again = transcribe_on_cpu(str(folder))
    assert again.returncode == 0, again.stderr
    assert "skipping 2 file(s)" in again.stderr
    assert workers_started(newest_run()) == 0

    later = (folder / "talk.mp3").stat().st_mtime + 10
    os.utime(folder / "talk.mp3", (later, later))
    touched = transcribe_on_cpu(str(folder))
    assert touched.returncode == 0, touched.stderr
    assert "skipping 1 file(s)" in touched.stderr
    assert workers_started(newest_run()) == 1
    redone = [j for j in stored_jobs() if j.status is JobState.COMPLETED]
    assert sorted(Path(j.input_path).name for j in redone) == ["talk.flac", "talk.mp3", "talk.mp3"]


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real size-limited tmpfs mounted at ``where`` (the tests run as root)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Use up every byte of the file system under ``folder``."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    return filler


def two_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SPEECH_AUDIO / "jfk.flac", folder / "jfk.flac")
    shutil.copy(SPEECH_AUDIO / "hotwords.mp3", folder / "hotwords.mp3")
    return folder


def assert_kept_and_failed_once(result: subprocess.CompletedProcess[str], why: str) -> None:
    assert result.returncode == 1
    assert result.stderr.count(why) >= 2, result.stderr
    assert result.stderr.count("the transcript is kept at") >= 2
    jobs = stored_jobs()
    assert len(jobs) == 2
    for job in jobs:
        assert job.status is JobState.FAILED and job.attempts == 1  # transcribed once
        assert job.error is not None and why in job.error and "kept at" in job.error
    # No worker started beyond one per file: nothing was transcribed twice.
    assert workers_started(newest_run()) <= 2


def assert_written_without_a_model(out: Path) -> None:
    rerun = transcribe_on_cpu(str(out.parent / "in"), "--out-dir", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert "wrote the outputs of 2 file(s) from transcripts" in rerun.stderr
    assert workers_started(newest_run()) == 0
    assert word_error_rate(JFK_TEXT, (out / "jfk.txt").read_text()) <= 0.05
    assert "-->" in (out / "hotwords.srt").read_text()
    again = transcribe_on_cpu(str(out.parent / "in"), "--out-dir", str(out))
    assert "skipping 2 file(s)" in again.stderr


def test_a_full_disk_keeps_the_transcripts_and_a_rerun_writes_them(tmp_path: Path) -> None:
    two_inputs(tmp_path)
    with tmpfs(tmp_path / "out", "256k") as out:
        filler = fill(out)
        full = transcribe_on_cpu(str(tmp_path / "in"), "--out-dir", str(out))
        assert_kept_and_failed_once(full, "No space left on device")
        filler.unlink()
        assert_written_without_a_model(out)


def test_a_read_only_folder_keeps_the_transcripts_and_a_rerun_writes_them(
    tmp_path: Path,
) -> None:
    two_inputs(tmp_path)
    with tmpfs(tmp_path / "out", "1m") as out:
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        locked = transcribe_on_cpu(str(tmp_path / "in"), "--out-dir", str(out))
        assert_kept_and_failed_once(locked, "Read-only file system")
        subprocess.run(["mount", "-o", "remount,rw", str(out)], check=True)
        assert_written_without_a_model(out)
