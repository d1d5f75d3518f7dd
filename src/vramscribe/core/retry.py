"""Retry decisions: a pure function from a failure to what happens next.

After an out-of-memory failure the next attempt steps down the fallback ladder
of the design's failure table when it can, one rung per attempt: a smaller
batch (half the failed attempt's), then, if the run opted in with
``--fallback int8,cpu``, int8 weights, then the CPU. A rung is never refused
for lack of attempts: ``max_attempts`` counts the attempts made at the
settings the job has now, so the default limit covers the whole ladder. With
no rung left, the job is retried as it was with a raised estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vramscribe.core.jobs import Job, JobState, fail, transition
from vramscribe.core.settings import Settings


class FailureKind(StrEnum):
    OOM = "oom"
    LOAD_ERROR = "load_error"
    CRASH = "crash"
    HANG = "hang"
    BAD_INPUT = "bad_input"
    OUTPUT = "output"
    """The transcript is done but its outputs could not be written: redoing it would not help."""


NOT_RETRIED = frozenset({FailureKind.LOAD_ERROR, FailureKind.BAD_INPUT, FailureKind.OUTPUT})


FALLBACK_RUNGS = ("int8", "cpu")
"""Opt-in rungs of the ladder, in the order they are tried (a smaller batch comes first)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a failed attempt ran with; the ladder steps down from it."""

    batch_size: int
    compute_type: str
    """As resolved on its device (``float16``, ``int8``, ...), never ``default``."""
    device_kind: str
    loaded: bool = True
    """Whether the model was in memory: a batch is only allocated after the load."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """The settings the next attempt runs with, one rung down the ladder (None: unchanged)."""

    words: str
    batch_size: int | None = None
    compute_type: str | None = None
    device_kind: str | None = None


def next_rung(ran: Attempt, rungs: tuple[str, ...]) -> Fallback | None:
    """The next rung below ``ran``, or None when the ladder is exhausted.

    A smaller batch helps only once the model is loaded: an attempt that ran out of
    memory while loading met a device with less room than the model itself (a
    neighbour's spike, say), and a raised estimate is the better answer to that.
    """
    if ran.batch_size > 1 and ran.loaded:
        smaller = ran.batch_size // 2
        return Fallback(f"batch size {smaller}", batch_size=smaller)
    if "int8" in rungs and ran.device_kind != "cpu" and not ran.compute_type.startswith("int8"):
        return Fallback("int8", compute_type="int8")
    if "cpu" in rungs and ran.device_kind != "cpu":
        # float16 does not run on a CPU; int8 is what faster-whisper uses there by default.
        return Fallback("the CPU (int8)", batch_size=1, compute_type="int8", device_kind="cpu")
    return None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float
    estimate_floor_mb: float
    reason: str
    fallback: Fallback | None = None


def decide_retry(
    kind: FailureKind,
    attempt: int,
    estimate_mb: float,
    settings: Settings,
    detail: str = "",
    ran: Attempt | None = None,
    steps_taken: int = 0,
) -> RetryDecision:
    """Decide a failed attempt's fate.

    ``attempt`` counts attempts made so far, this one included; ``steps_taken``
    how many of them stepped down the ladder. ``estimate_mb`` is what the failed
    attempt was granted; after an out-of-memory failure with no rung left the
    next attempt asks for ``oom_estimate_factor`` times more. ``ran`` (None:
    no ladder) is what the failed attempt ran with.
    """
    what = f"{kind.value}: {detail}" if detail else kind.value
    floor = estimate_mb * settings.oom_estimate_factor if kind is FailureKind.OOM else 0.0
    if kind in NOT_RETRIED:
        return RetryDecision(False, 0.0, floor, f"{what} (not retried)")
    delay = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
    rung = next_rung(ran, settings.fallback) if ran and kind is FailureKind.OOM else None
    if rung is not None:
        # New settings, new estimate: the raised floor was for the ones that failed.
        return RetryDecision(
            True, delay, 0.0, f"{what} (attempt {attempt + 1} on {rung.words})", rung
        )
    limit = settings.max_attempts + steps_taken
    if attempt >= limit:
        return RetryDecision(False, 0.0, floor, f"{what} (gave up after {attempt} attempts)")
    return RetryDecision(True, delay, floor, f"{what} (retry {attempt + 1}/{limit})")


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What :func:`apply_failure` did: whether the job goes back to the queue, and
    until when its device admits nothing (None: no cooldown)."""

    retry: bool
    cooldown_until: float | None
    fallback: Fallback | None = None


def apply_failure(
    job: Job,
    kind: FailureKind,
    detail: str,
    granted_mb: float,
    now: float,
    settings: Settings,
    ran: Attempt | None = None,
) -> FailureOutcome:
    """Apply a failed attempt to ``job``: back to pending with a delay and a raised
    estimate floor (or one rung down the ladder, given ``ran``), or failed with the
    reason. The caller re-queues a retried job, cools the device down when told to,
    and gives a job whose compute type changed an engine of that type.
    """
    decision = decide_retry(
        kind, job.attempts, granted_mb, settings, detail, ran, job.fallback_steps
    )
    cooldown = now + settings.oom_cooldown_s if kind is FailureKind.OOM else None
    if not decision.retry:
        fail(job, now, decision.reason)
        return FailureOutcome(False, cooldown)
    transition(job, JobState.PENDING, now, decision.reason)
    job.not_before = now + decision.delay_s
    rung = decision.fallback
    if rung is None:
        job.estimate_floor_mb = max(job.estimate_floor_mb, decision.estimate_floor_mb)
        return FailureOutcome(True, cooldown)
    job.fallback_steps += 1
    job.estimate_floor_mb = 0.0
    job.batch_size = rung.batch_size or job.batch_size
    job.compute_type = rung.compute_type or job.compute_type
    job.device_kind = rung.device_kind or job.device_kind
    return FailureOutcome(True, cooldown, rung)
