"""Spare workers started before the command line's imports: adopted by the first launch,
ended when nobody needs them, and started only for ``vramscribe transcribe``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_runtime_fake import add_jobs, make_runner
from vramscribe.core.jobs import JobState
from vramscribe.runtime import spares


@pytest.fixture(autouse=True)
def no_spares_left() -> Iterator[None]:
    yield
    spares.discard()


def test_the_first_worker_is_a_spare_started_before_it_was_needed(tmp_path: Path) -> None:
    spares.prestart(1)
    [spare] = spares._spares
    spare_log = spare.log_path
    runner, device = make_runner(tmp_path, total_mb=5000)
    tasks = add_jobs(runner, device, tmp_path, 1)
    runner.run()
    assert tasks[0].job.state is JobState.COMPLETED, tasks[0].job.error
    assert spares._spares == [] and spare.proc.wait(timeout=10) == 0
    # It ran the job: the worker the runner launched is the spare's process, at the
    # workers' lower priority, and its log was moved to the run's worker log.
    assert tasks[0].worker_pid == spare.proc.pid
    assert not spare_log.exists()
    assert list((tmp_path / "run").glob("worker-*.log"))


def test_spares_nobody_adopts_exit_and_leave_no_log() -> None:
    spares.prestart(2)
    started = list(spares._spares)
    assert len(started) == 2 and all(s.proc.poll() is None for s in started)
    spares.discard()
    assert [s.proc.poll() for s in started] == [0, 0]
    assert not any(s.log_path.exists() for s in started)


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["/venv/bin/vramscribe", "transcribe", "talks/"], 1),
        (["/src/vramscribe/__main__.py", "transcribe", "talks/"], 1),
        (["/venv/bin/vramscribe", "transcribe", "--help"], 0),
        (["/venv/bin/vramscribe", "serve"], 0),
        (["/venv/bin/pytest", "transcribe"], 0),
    ],
)
def test_only_a_transcribe_command_starts_spares(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], count: int
) -> None:
    monkeypatch.setenv("VRAMSCRIBE_SPARES", "1")
    spares.prestart_for(argv)
    assert len(spares._spares) == count
    assert all(os.getpgid(s.proc.pid) == s.proc.pid for s in spares._spares)


def test_a_spare_log_on_another_filesystem_is_linked_from_the_job_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spares.prestart(1)
    [spare] = spares._spares

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(spares.os, "replace", cross_device)
    log_path = tmp_path / "worker-j.1.log"
    assert spares.adopt(log_path) is spare.proc
    assert log_path.is_symlink() and log_path.resolve() == spare.log_path.resolve()
    spare.proc.stdin.close()  # type: ignore[union-attr]
    assert spare.proc.wait(timeout=10) == 0
    spare.proc.stdout.close()  # type: ignore[union-attr]
    spare.log_path.unlink()


def test_a_spare_that_cannot_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(stderr: object, spare: bool = False) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(spares, "start_worker", no_process)
    monkeypatch.setattr(spares.tempfile, "tempdir", str(tmp_path))
    spares.prestart(2)
    assert spares._spares == [] and list(tmp_path.iterdir()) == []
    assert spares.adopt(tmp_path / "worker.log") is None
