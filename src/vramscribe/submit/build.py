"""From a request to a runnable job: the model resolved, the engine options, the job and its record.

This is the one place a :class:`~vramscribe.engines.base.EngineOptions`, a core
:class:`~vramscribe.core.jobs.Job`, a runtime :class:`~vramscribe.runtime.task.Task`
and a store :class:`~vramscribe.store.records.JobRecord` are made for a new job, so
the CLI and the service cannot build them differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramscribe.core.jobs import Job
from vramscribe.core.profiles import decoding_extra_mb, profile_for
from vramscribe.decoding import beams, needs_words
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import UnknownModel
from vramscribe.models import resolve_model
from vramscribe.runtime.task import Task
from vramscribe.store.records import JobRecord, new_record
from vramscribe.submit.request import JobRequest


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """A model name resolved: what the engine loads and what the planner estimates with."""

    path: str
    """A folder, or a name faster-whisper may download (the fake engine: the name)."""

    profile: str
    """The memory-profile name; the name as typed when nothing hints at the size."""


def choose_model(model: str, engine: str) -> ModelChoice:
    """Resolve ``model`` before anything is queued, so a bad name fails at once.

    Raises :class:`~vramscribe.errors.UnknownModel` when the fake engine has no
    profile for the name, and :class:`~vramscribe.errors.ModelNotAvailable` when
    a real model cannot be found or fetched (with advice).
    """
    if engine == "fake":
        if profile_for(model) is None:
            raise UnknownModel(f"unknown model {model!r}")
        return ModelChoice(model, model)
    resolved = resolve_model(model)
    return ModelChoice(resolved.path, resolved.profile_name or model)


def engine_options(request: JobRequest, model: ModelChoice, cpu_threads: int) -> EngineOptions:
    """What the worker runs the request with (the device is filled in when it starts)."""
    return EngineOptions(
        engine=request.engine,
        model=request.model,
        model_path=model.path,
        compute_type=request.compute_type,
        batch_size=request.batch_size,
        cpu_threads=cpu_threads,
        language=request.language,
        beam_size=request.beam_size,
        vad_filter=request.vad_filter,
        word_timestamps=request.word_timestamps or needs_words(request.layout),
        initial_prompt=request.initial_prompt,
        hotwords=request.hotwords,
        fake=dict(request.fake),
        decoding=dict(request.decoding),
        layout=dict(request.layout),
        channel=request.channel,
    )


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be queued: the runtime's task and the store's record of it."""

    task: Task
    record: JobRecord


def build_job(
    request: JobRequest,
    model: ModelChoice,
    *,
    cpu_threads: int,
    now: float,
    audio_s: float = 0.0,
) -> NewJob:
    """The task and record for ``request``, submitted at ``now``; ``audio_s`` once probed."""
    engine = engine_options(request, model, cpu_threads)
    job = Job(
        request.job_id,
        model.profile,
        audio_s=audio_s,
        priority=request.priority,
        submitted_at=now,
        compute_type=request.compute_type,
        batch_size=request.batch_size,
        decode_extra_mb=decoding_extra_mb(
            model.profile, beams(request.beam_size, request.decoding)
        ),
    )
    task = Task(job, request.input, engine, list(request.outputs))
    record = new_record(
        job,
        model=request.model,
        input_path=request.input,
        outputs=request.outputs,
        options=engine.to_dict(),
        now=now,
        input_root=request.input_root,
        filename=request.filename,
    )
    return NewJob(task, record)
