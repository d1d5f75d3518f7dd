"""Jobs and their lifecycle: one enum, one transition table, one function.

The lifecycle is written down exactly once; the runtime, the store and the
simulator all move jobs through :func:`transition`, so the state history is the
single record of what happened to a job and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vramscribe.errors import IllegalTransition


class JobState(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        """Holding (or about to hold) device memory."""
        return self in (JobState.LOADING, JobState.PROCESSING)


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})

# PENDING -> PROCESSING is the warm-reuse edge; X -> PENDING are retries;
# PENDING -> FAILED covers jobs the planner rejects (they can never fit).
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset(
        {JobState.LOADING, JobState.PROCESSING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.LOADING: frozenset(
        {JobState.PROCESSING, JobState.PENDING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.PROCESSING: frozenset(
        {JobState.COMPLETED, JobState.PENDING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

FootprintKey = tuple[str, str, int, str]
"""(model, compute type, batch size, device kind): what memory and speed are learned by."""

PRIORITY_MIN = 0
PRIORITY_MAX = 100
PRIORITY_NAMES: dict[str, int] = {"low": 25, "normal": 50, "high": 75, "urgent": 100}
DEFAULT_PRIORITY = PRIORITY_NAMES["normal"]


def parse_priority(value: str | int) -> int:
    """Accept a name (``high``) or a number in [PRIORITY_MIN, PRIORITY_MAX]."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PRIORITY_NAMES:
            return PRIORITY_NAMES[name]
        try:
            value = int(name)
        except ValueError:
            names = ", ".join(PRIORITY_NAMES)
            raise ValueError(
                f"priority must be one of {names} or a number "
                f"{PRIORITY_MIN}-{PRIORITY_MAX}, got {value!r}"
            ) from None
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise ValueError(f"priority must be {PRIORITY_MIN}-{PRIORITY_MAX}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Transition:
    time: float
    from_state: JobState
    to_state: JobState
    reason: str


@dataclass(slots=True, eq=False)
class Job:
    """A request to transcribe one file with one model.

    ``audio_s`` is the audio length when known (0 if not yet probed); the
    planner uses it for growth-aware memory estimates and expected end times.
    ``not_before`` delays a retried job (backoff); ``estimate_floor_mb`` is the
    lower bound an out-of-memory failure put on its estimate. ``batch_size`` 0
    means "auto": the planner picks it from memory when the job starts.
    ``engine_key`` names everything a loaded instance would have to reload for
    (model files, compute type, engine settings): a warm instance takes the next
    job only if the keys match.
    """

    id: str
    model: str
    audio_s: float = 0.0
    priority: int = DEFAULT_PRIORITY
    submitted_at: float = 0.0
    compute_type: str = "default"
    batch_size: int = 1
    state: JobState = JobState.PENDING
    attempts: int = 0
    not_before: float = 0.0
    estimate_floor_mb: float = 0.0
    error: str | None = None
    history: list[Transition] = field(default_factory=list)
    engine_key: str = ""
    decode_extra_mb: float = 0.0
    """Memory its decoding options need beyond the model's estimate (beams above 5)."""
    device_kind: str | None = None
    """Only devices of this kind may run it (the fallback ladder's CPU rung); None: any
    of the run's own devices."""
    fallback_steps: int = 0
    """Attempts that stepped down the fallback ladder (they do not count against the limit)."""

    def footprint_key(self, device_kind: str, batch_size: int | None = None) -> FootprintKey:
        batch = batch_size if batch_size is not None else max(1, self.batch_size)
        return (self.model, self.compute_type, batch, device_kind)

    @property
    def reuse_key(self) -> str:
        return self.engine_key or f"{self.model}/{self.compute_type}"


def transition(job: Job, to_state: JobState, now: float, reason: str) -> Transition:
    """Move ``job`` to ``to_state`` and append the change to its history."""
    if to_state not in TRANSITIONS[job.state]:
        raise IllegalTransition(
            f"job {job.id}: cannot go from {job.state.value} to {to_state.value} ({reason})"
        )
    record = Transition(now, job.state, to_state, reason)
    job.state = to_state
    job.history.append(record)
    return record


def fail(job: Job, now: float, reason: str) -> Transition:
    """End ``job`` as failed, with ``reason`` as both its error and its history entry."""
    job.error = reason
    return transition(job, JobState.FAILED, now, reason)
