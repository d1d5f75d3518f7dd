"""The service's request and response bodies, as pydantic models (they also document the API).

Request bodies are read leniently here and checked by
:class:`~vramscribe.submit.request.JobRequest`, so the service and the CLI
refuse the same values with the same messages.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from vramscribe.service.whisper_fields import WhisperFields, whisper_values
from vramscribe.submit.request import OPTION_FIELDS

Loose = str | int | float | bool | None
"""A field value as a client may send it; :meth:`JobRequest.parse` reads it."""


class JobOptions(WhisperFields):
    """The options of a job sent as JSON, one set for one path or for a batch of paths."""

    model_config = ConfigDict(extra="forbid")

    model: Loose = None
    language: Loose = None
    priority: Loose = None
    beam_size: Loose = None
    vad_filter: Loose = None
    word_timestamps: Loose = None
    initial_prompt: Loose = None
    hotwords: Loose = None
    compute_type: Loose = None
    batch_size: Loose = None
    split_channels: Loose = None
    channel_names: Loose | list[str] = None
    callback_url: str | None = None
    """Where the job's end is posted (see ``service/webhooks.py``)."""

    def options(self) -> dict[str, Loose]:
        return {name: getattr(self, name) for name in OPTION_FIELDS} | whisper_values(self)


class JobByPath(JobOptions):
    """``POST /v1/jobs`` with JSON: a file under an allowed root, and per-job options."""

    path: str


class HistoryEntry(BaseModel):
    time: float
    from_: str = Field(serialization_alias="from")
    to: str
    reason: str


class Timings(BaseModel):
    wait_s: float | None
    load_s: float | None
    transcribe_s: float | None


class JobOut(BaseModel):
    """A job as clients see it; ``timings`` only while the scheduler holds it."""

    id: str
    status: str
    model: str
    priority: int
    audio_s: float
    progress_s: float
    progress: float
    attempts: int
    error: str | None
    pending_reason: str | None
    device: str | None
    input: str
    submitted_at: float
    finished_at: float | None
    history: list[HistoryEntry]
    timings: Timings | None = None


class JobList(BaseModel):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class InstanceOut(BaseModel):
    job_id: str
    state: str
    pid: int
    reserved_mb: float
    observed_mb: float


class DeviceOut(BaseModel):
    id: str
    kind: str
    total_mb: float
    others_mb: float
    ours_mb: float
    reserved_mb: float
    free_mb: float
    instances: list[InstanceOut]
    # Limits users set (--reserve, --memory-limit / --memory-fraction); null: no limit.
    reserve_bytes: int = 0
    memory_limit_bytes: int | None = None
    node: str | None = None
    """The Ray node it belongs to (serve --ray); None on a single machine."""


class DeviceList(BaseModel):
    devices: list[DeviceOut]


class Status(BaseModel):
    status: str


class OpenAIText(BaseModel):
    """OpenAI's ``json`` response format."""

    text: str


class OpenAISegment(BaseModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class OpenAIVerbose(BaseModel):
    """OpenAI's ``verbose_json`` response format."""

    task: str = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[OpenAISegment]


# -- batch submission (POST /v1/batches) -------------------------------------------------
MAX_BATCH = 1000
"""Files or paths one batch request may hold."""


class JobsByPath(JobOptions):
    """``POST /v1/batches`` with JSON: files under an allowed root, one set of options."""

    paths: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItemOut(BaseModel):
    """One file of a batch: the job made for it, or why it was refused."""

    input: str
    """The file's name as uploaded, or the path as sent."""
    status: int
    """201 if a job was made; else the status a single submission would have had."""
    job: JobOut | None = None
    error: str | None = None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[BatchItemOut]
