"""Submitting a file split by channel: one parent job and one child job per channel.

Each child is an ordinary job whose engine transcribes one channel and writes its
transcript (json) to the run folder; the parent holds the user's outputs and is
completed by :class:`~vramscribe.runtime.split.SplitMerger` once every channel is
merged. The parent's record is what a client gets back (the service returns its id).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vramscribe.channels import labels
from vramscribe.runtime.split import ChannelGroup
from vramscribe.runtime.task import Task
from vramscribe.submit.build import ModelChoice, NewJob, build_job
from vramscribe.submit.request import JobRequest, new_job_id


def channel_jobs(
    request: JobRequest,
    model: ModelChoice,
    *,
    channels: int,
    folder: Path,
    cpu_threads: int,
    now: float,
    audio_s: float,
) -> tuple[NewJob, list[NewJob], ChannelGroup]:
    """The parent, its children and the group that ties them together."""
    names = labels(channels, request.channel_names)
    parent = build_job(request, model, cpu_threads=cpu_threads, now=now, audio_s=audio_s)
    children: list[NewJob] = []
    for k in range(channels):
        child = replace(
            request,
            job_id=new_job_id(),
            split_channels=False,
            channel_names=(),
            channel=k,
            outputs=(("json", folder / f"{request.job_id}.channel{k + 1}.json"),),
            filename=f"{request.filename or request.input.name} [{names[k]}]",
        )
        children.append(build_job(child, model, cpu_threads=cpu_threads, now=now, audio_s=audio_s))
    tasks: list[Task] = [c.task for c in children]
    return parent, children, ChannelGroup(parent.task, tasks, names)
