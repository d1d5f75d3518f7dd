"""Keep the store in step with a runner: every state change is one store transaction.

The runner applies transitions to its in-memory jobs; this listener replays
each job's new history entries into the store, where ``Store.transition``
checks them against the same transition table. Used by the service and by the
CLI's batch mode, so both survive being killed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from vramscribe.core.jobs import JobState
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.task import Task
from vramscribe.store.store import JobRecord, Store


def task_from_record(rec: JobRecord) -> Task:
    """A runnable task for a stored job (its history and attempts carried over)."""
    options = {k: v for k, v in rec.options.items() if k not in ("profile", "filename")}
    outputs = [(fmt, Path(path)) for fmt, path in rec.outputs]
    return Task(
        rec.to_job(),
        Path(rec.input_path),
        EngineOptions.from_dict(options),
        outputs,
        progress_s=rec.progress_s,
    )


def record_for(
    task: Task,
    now: float,
    model: str,
    input_root: Path | None = None,
    filename: str | None = None,
) -> JobRecord:
    """A new store row for a task that is about to be queued.

    ``model`` is what the user typed (shown back to them); the task's job
    carries the profile name the planner estimates with. ``filename`` is the
    name a client uploaded under, kept for display only.
    """
    options: dict[str, Any] = {**task.engine.to_dict(), "profile": task.job.model}
    if filename:
        options["filename"] = filename
    job = task.job
    return JobRecord(
        id=job.id,
        status=job.state,
        model=model,
        priority=job.priority,
        audio_s=job.audio_s,
        submitted_at=job.submitted_at,
        attempts=job.attempts,
        not_before=job.not_before,
        estimate_floor_mb=job.estimate_floor_mb,
        error=job.error,
        input_path=str(task.input),
        input_root=str(input_root) if input_root else None,
        outputs=[(fmt, str(path)) for fmt, path in task.outputs],
        options=options,
        progress_s=0.0,
        device_id=None,
        worker_pid=None,
        pending_reason="queued",
        created_at=now,
        updated_at=now,
        finished_at=None,
        history=tuple(job.history),
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


class StorePersister:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._persisted: dict[str, int] = {}

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
                "attempts": job.attempts,
                "error": job.error,
                "not_before": job.not_before,
                "estimate_floor_mb": job.estimate_floor_mb,
                "device_id": task.device_id,
                "worker_pid": task.worker_pid,
            }
            if record.to_state is JobState.COMPLETED:
                fields["progress_s"] = job.audio_s
            if record.to_state.is_final:
                fields["finished_at"] = record.time
                fields["worker_pid"] = None
            self.store.transition(job.id, record.to_state, record.time, record.reason, **fields)
        self._persisted[job.id] = len(job.history)
