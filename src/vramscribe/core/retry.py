"""Retry decisions: a pure function from a failure to what happens next."""

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


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float
    estimate_floor_mb: float
    reason: str


def decide_retry(
    kind: FailureKind,
    attempt: int,
    estimate_mb: float,
    settings: Settings,
    detail: str = "",
) -> RetryDecision:
    """Decide a failed attempt's fate.

    ``attempt`` counts attempts made so far, this one included. ``estimate_mb``
    is what the failed attempt was granted; after an out-of-memory failure the
    next attempt asks for ``oom_estimate_factor`` times more.
    """
    what = f"{kind.value}: {detail}" if detail else kind.value
    floor = estimate_mb * settings.oom_estimate_factor if kind is FailureKind.OOM else 0.0
    if kind in NOT_RETRIED:
        return RetryDecision(False, 0.0, floor, f"{what} (not retried)")
    if attempt >= settings.max_attempts:
        return RetryDecision(False, 0.0, floor, f"{what} (gave up after {attempt} attempts)")
    delay = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
    return RetryDecision(
        True, delay, floor, f"{what} (retry {attempt + 1}/{settings.max_attempts})"
    )


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What :func:`apply_failure` did: whether the job goes back to the queue, and
    until when its device admits nothing (None: no cooldown)."""

    retry: bool
    cooldown_until: float | None


def apply_failure(
    job: Job,
    kind: FailureKind,
    detail: str,
    granted_mb: float,
    now: float,
    settings: Settings,
) -> FailureOutcome:
    """Apply a failed attempt to ``job``: back to pending with a delay and a raised
    estimate floor, or failed with the reason. The caller re-queues a retried job
    and cools the device down when told to.
    """
    decision = decide_retry(kind, job.attempts, granted_mb, settings, detail)
    cooldown = now + settings.oom_cooldown_s if kind is FailureKind.OOM else None
    if not decision.retry:
        fail(job, now, decision.reason)
        return FailureOutcome(False, cooldown)
    transition(job, JobState.PENDING, now, decision.reason)
    job.not_before = now + decision.delay_s
    job.estimate_floor_mb = max(job.estimate_floor_mb, decision.estimate_floor_mb)
    return FailureOutcome(True, cooldown)
