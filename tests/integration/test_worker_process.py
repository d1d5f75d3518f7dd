"""Real worker processes: their own process group, the parent's session, a lower CPU priority."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_runtime_fake import add_jobs, make_runner
from vramscribe.core.jobs import JobState
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.spares import WORKER_NICE


@pytest.mark.parametrize(
    ("env", "expected"), [(None, WORKER_NICE), ("0", 0), ("3", 3), ("lots", WORKER_NICE)]
)
def test_workers_run_below_the_parent_in_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, expected: int
) -> None:
    if env is not None:
        monkeypatch.setenv("VRAMSCRIBE_WORKER_NICE", env)
    runner, device = make_runner(tmp_path, total_mb=5000)
    tasks = add_jobs(runner, device, tmp_path, 1)
    seen: list[tuple[int, int, int, int]] = []

    def look(event: RunnerEvent) -> None:
        if isinstance(event, JobChanged) and event.task.job.state is JobState.PROCESSING:
            for pid in runner.instances:
                nice = os.getpriority(os.PRIO_PROCESS, pid)
                seen.append((pid, nice, os.getsid(pid), os.getpgid(pid)))

    runner.listeners.append(look)
    runner.run()
    assert tasks[0].job.state is JobState.COMPLETED, tasks[0].job.error
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    ((pid, nice, session, group),) = seen
    assert nice == min(19, mine + expected)
    assert session == os.getsid(0)  # the parent's session: one CPU group with the parent
    assert group == pid != os.getpgid(0)  # a group of its own: killed as one, no Ctrl-C
