"""Keeping the store's output ledger in step with a runner.

When a job completes, each of its outputs is recorded with the input it was
written from (path, size, modification time), which is what "skip existing
outputs" checks. When a job's outputs could not be written, its finished
transcript is recorded as kept, so a rerun writes the outputs from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vramscribe.core.jobs import JobState
from vramscribe.naming import stamp
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.store.ledger import KeptTranscript, OutputLedger

# Engine options that change how a transcript is made but not what it says.
RUN_ONLY_OPTIONS = frozenset(
    {
        "device",
        "device_index",
        "cpu_threads",
        "batch_size",
        "compute_type",
        "model_path",
        "fake",
        "layout",
    }
)


def same_request(kept: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a kept transcript answers a request made with the engine options ``wanted``."""
    keys = (set(kept) | set(wanted)) - RUN_ONLY_OPTIONS
    return all(kept.get(k) == wanted.get(k) for k in keys)


def matcher(wanted: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    return lambda kept: same_request(kept, wanted)


class LedgerWriter:
    """A runner listener; see the module."""

    def __init__(self, ledger: OutputLedger) -> None:
        self.ledger = ledger

    def __call__(self, event: RunnerEvent) -> None:
        if not isinstance(event, JobChanged):
            return
        task = event.task
        job = task.job
        source = stamp(task.input)
        if source is None or not job.history:
            return
        now = job.history[-1].time
        if job.state is JobState.COMPLETED:
            self.ledger.record([p for _, p in task.outputs], source, job.id, now)
        elif job.state is JobState.FAILED and task.kept_result is not None:
            kept = KeptTranscript(
                job.id, source, task.engine.to_dict(), task.kept_result, job.error or ""
            )
            self.ledger.keep(kept, now)
