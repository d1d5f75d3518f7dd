"""Keep the store in step with a runner: every state change is one store transaction.

The runner applies transitions to its in-memory jobs; this listener replays
each job's new history entries into the store, where ``Store.transition``
checks them against the same transition table. Used by the service and by the
CLI's batch mode, so both survive being killed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from vramscribe.core.jobs import JobState
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import IllegalTransition, LeaseLost
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.task import Task
from vramscribe.store.records import JobRecord, job_values
from vramscribe.store.store import Store


def task_from_record(rec: JobRecord) -> Task:
    """A runnable task for a stored job (its history and attempts carried over)."""
    return Task(
        rec.to_job(),
        Path(rec.input_path),
        EngineOptions.from_dict(rec.options),
        [(fmt, Path(path)) for fmt, path in rec.outputs],
        progress_s=rec.progress_s,
    )


def end_orphan(pid: int) -> bool:
    """Kill a worker a previous service left running; only our own workers."""
    try:
        proc = psutil.Process(pid)
        if not any("vramscribe.worker" in part for part in proc.cmdline()):
            return False
        proc.kill()
        proc.wait(timeout=10)
        return True
    except (psutil.Error, OSError):
        return False


# What a job's attempts changed, written with each state change it made.
ATTEMPT_FIELDS = ("attempts", "error", "not_before", "estimate_floor_mb")


class StorePersister:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._persisted: dict[str, int] = {}
        self.holder: str | None = None
        """This run's lease token: set, every change is written only while we hold the job."""
        self.on_lost: Callable[[str], None] = lambda job_id: None
        """Told (with the job's id) when a change was refused because the job is not ours."""

    def known(self, job_id: str, entries: int) -> None:
        """``entries`` history entries of ``job_id`` are already in the store."""
        self._persisted[job_id] = entries

    def __call__(self, event: RunnerEvent) -> None:
        if isinstance(event, JobChanged):
            self.persist(event.task)

    def persist(self, task: Task) -> None:
        job = task.job
        done = self._persisted.get(job.id, 0)
        for record in job.history[done:]:
            fields: dict[str, Any] = {
                **job_values(job, ATTEMPT_FIELDS),
                "device_id": task.device_id,
                "worker_pid": task.worker_pid,
            }
            if record.to_state is JobState.COMPLETED:
                fields["progress_s"] = job.audio_s
            if record.to_state.is_final:
                fields["finished_at"] = record.time
                fields["worker_pid"] = None
            try:
                self.store.transition(
                    job.id,
                    record.to_state,
                    record.time,
                    record.reason,
                    holder=self.holder,
                    **fields,
                )
            except (LeaseLost, IllegalTransition):
                if self.holder is None:
                    raise
                # Another owner moved it (or a client cancelled it in the store): not ours.
                self._persisted.pop(job.id, None)
                self.on_lost(job.id)
                return
        self._persisted[job.id] = len(job.history)
