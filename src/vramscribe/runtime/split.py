"""A file split by channel: a parent job whose children transcribe one channel each.

The parent is held by the runner (never queued); its children are ordinary jobs,
so the planner runs them in parallel when memory allows. This listener moves the
parent as its children go: processing when the first starts, failed with the
child's reason when one fails (the channels already finished stay in the run
folder), completed once every channel is merged into the parent's outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vramscribe.channels import merge
from vramscribe.core.jobs import JobState
from vramscribe.outputs import write_atomic
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.outcome import kept_message, write_outputs
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task
from vramscribe.transcript import Transcript

ACTIVE = (JobState.LOADING, JobState.PROCESSING)


@dataclass(slots=True)
class ChannelGroup:
    parent: Task
    children: list[Task]
    labels: list[str]


class SplitMerger:
    """A runner listener; see the module."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.by_child: dict[str, ChannelGroup] = {}

    def add(self, group: ChannelGroup) -> None:
        for child in group.children:
            self.by_child[child.job.id] = group

    def __call__(self, event: RunnerEvent) -> None:
        if not isinstance(event, JobChanged):
            return
        group = self.by_child.get(event.task.job.id)
        if group is None or group.parent.job.state.is_final:
            return
        child, parent = event.task, group.parent
        label = group.labels[group.children.index(child)]
        if child.job.state in ACTIVE and parent.job.state is JobState.PENDING:
            self.runner.advance(parent, JobState.PROCESSING, f"{label} started")
        elif child.job.state in (JobState.FAILED, JobState.CANCELLED):
            done = [t for t in group.children if t.job.state is JobState.COMPLETED]
            kept = ", ".join(str(t.outputs[0][1]) for t in done) or "none"
            reason = f"{label} failed: {child.job.error or child.job.state.value}"
            self.runner.advance(parent, JobState.FAILED, f"{reason} (finished channels: {kept})")
        elif all(t.job.state is JobState.COMPLETED for t in group.children):
            self._merge(group)

    def _merge(self, group: ChannelGroup) -> None:
        parent = group.parent
        transcripts = [
            Transcript.from_dict(json.loads(Path(t.outputs[0][1]).read_text()))
            for t in group.children
        ]
        merged = merge(transcripts, group.labels)
        result = self.runner.run_dir / "results" / f"{parent.job.id}.merged.json"
        write_atomic(result, json.dumps(merged.to_dict()))
        if parent.job.state is JobState.PENDING:
            self.runner.advance(parent, JobState.PROCESSING, "channels transcribed")
        problem = write_outputs(result, parent.outputs, parent.engine.layout)
        if problem is not None:
            parent.kept_result = result
            self.runner.advance(parent, JobState.FAILED, kept_message(problem, result))
            return
        parent.progress_s = parent.job.audio_s
        names = ", ".join(group.labels)
        self.runner.advance(
            parent, JobState.COMPLETED, f"merged {len(transcripts)} channels ({names})"
        )
