"""What the API shows of jobs, devices and instances, built from the store and the runner."""

from __future__ import annotations

from typing import Any

from vramscribe.core.jobs import JobState
from vramscribe.core.observe import Tracked
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task
from vramscribe.service.schemas import (
    DeviceOut,
    HistoryEntry,
    InstanceOut,
    JobOut,
    Timings,
)
from vramscribe.store.records import JobRecord


def job_view(rec: JobRecord, live: Task | None) -> JobOut:
    """A job from its record, with the runner's fresher view when it holds the job."""
    status = live.job.state if live is not None else rec.status
    progress = live.progress_s if live is not None else rec.progress_s
    audio = rec.audio_s or 0.0
    timings = (
        {"timings": Timings(wait_s=live.wait_s, load_s=live.load_s, transcribe_s=live.transcribe_s)}
        if live is not None
        else {}
    )
    return JobOut(
        id=rec.id,
        status=status.value,
        model=rec.model,
        priority=rec.priority,
        audio_s=audio,
        progress_s=progress,
        progress=min(1.0, progress / audio) if audio else 0.0,
        attempts=live.job.attempts if live is not None else rec.attempts,
        error=(live.job.error if live is not None else None) or rec.error,
        pending_reason=(live.pending_reason if live is not None else rec.pending_reason)
        if status is JobState.PENDING
        else None,
        device=(live.device_id if live is not None else None) or rec.device_id,
        input=rec.display_name,
        submitted_at=rec.submitted_at,
        finished_at=rec.finished_at,
        history=[
            HistoryEntry(
                time=t.time, from_=t.from_state.value, to=t.to_state.value, reason=t.reason
            )
            for t in (live.job.history if live is not None else rec.history)
        ],
        **timings,
    )


def job_json(rec: JobRecord, live: Task | None) -> dict[str, Any]:
    """:func:`job_view` as JSON-ready data (event payloads)."""
    return job_view(rec, live).model_dump(mode="json", by_alias=True, exclude_unset=True)


def device_report(runner: Runner) -> list[DeviceOut]:
    """Every device the runner reads: its memory split and our instances on it."""
    out = []
    for dev_id in list(runner.readings):
        split = runner.memory_split(dev_id)
        if split is None:
            continue
        limits = runner.limits_for(dev_id)
        out.append(
            DeviceOut(
                id=dev_id,
                kind=runner.devices[dev_id].kind,
                total_mb=split.total_mb,
                others_mb=split.others_mb,
                ours_mb=split.ours_mb,
                reserved_mb=split.reserved_mb,
                free_mb=split.free_mb,
                instances=[
                    InstanceOut(
                        job_id=i.job_id,
                        state=instance_state(i),
                        pid=i.pid,
                        reserved_mb=i.reserved_mb,
                        observed_mb=i.observed_mb,
                    )
                    for i in split.instances
                ],
                reserve_bytes=limits.reserve_bytes,
                memory_limit_bytes=limits.memory_limit_bytes,
            )
        )
    return out


def instance_state(inst: Tracked) -> str:
    """What an instance is doing, in the words the dashboard shows."""
    if inst.exited_at is not None:
        return "releasing"
    if inst.idle_since is not None:
        return "idle"
    if inst.starting:
        return "starting"
    return inst.state.value
