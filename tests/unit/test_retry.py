import pytest

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.retry import Attempt, FailureKind, apply_failure, decide_retry, next_rung
from vramscribe.core.settings import Settings

SETTINGS = Settings(max_attempts=3, backoff_base_s=2, backoff_max_s=5, oom_estimate_factor=1.5)
K = FailureKind


@pytest.mark.parametrize(
    ("kind", "attempt", "retry", "delay", "floor"),
    [
        (K.OOM, 1, True, 2.0, 1500.0),
        (K.OOM, 2, True, 4.0, 1500.0),
        (K.OOM, 3, False, 0.0, 1500.0),
        (K.CRASH, 1, True, 2.0, 0.0),
        (K.HANG, 2, True, 4.0, 0.0),
        (K.CRASH, 3, False, 0.0, 0.0),
        (K.LOAD_ERROR, 1, False, 0.0, 0.0),
        (K.BAD_INPUT, 1, False, 0.0, 0.0),
        (K.OUTPUT, 1, False, 0.0, 0.0),
    ],
)
def test_retry_table(
    kind: FailureKind, attempt: int, retry: bool, delay: float, floor: float
) -> None:
    d = decide_retry(kind, attempt, 1000.0, SETTINGS, "detail")
    assert (d.retry, d.delay_s, d.estimate_floor_mb) == (retry, delay, floor)
    assert kind.value in d.reason and "detail" in d.reason


def test_backoff_is_capped() -> None:
    s = Settings(max_attempts=10, backoff_base_s=2, backoff_max_s=5)
    assert decide_retry(K.CRASH, 6, 0, s).delay_s == 5


def test_reasons_say_why_it_stopped() -> None:
    assert "not retried" in decide_retry(K.BAD_INPUT, 1, 0, SETTINGS).reason
    assert "gave up after 3 attempts" in decide_retry(K.HANG, 3, 0, SETTINGS).reason
    assert "retry 2/3" in decide_retry(K.HANG, 1, 0, SETTINGS).reason


# -- the fallback ladder -------------------------------------------------------------------

LADDER = Settings(max_attempts=3, fallback=("int8", "cpu"))


@pytest.mark.parametrize(
    ("ran", "rungs", "expected"),
    [
        (Attempt(8, "float16", "cuda"), (), (4, None, None)),
        (Attempt(2, "float16", "cuda"), ("int8", "cpu"), (1, None, None)),
        (Attempt(1, "float16", "cuda"), ("int8", "cpu"), (None, "int8", None)),
        (Attempt(1, "int8", "cuda"), ("int8", "cpu"), (1, "int8", "cpu")),
        (Attempt(1, "int8_float16", "cuda"), ("int8", "cpu"), (1, "int8", "cpu")),
        (Attempt(1, "float16", "cuda"), ("cpu",), (1, "int8", "cpu")),
        (Attempt(1, "float16", "cuda"), (), None),
        (Attempt(1, "int8", "cpu"), ("int8", "cpu"), None),
        # Out of memory while loading: a smaller batch would not help.
        (Attempt(8, "float16", "cuda", loaded=False), (), None),
        (Attempt(8, "float16", "cuda", loaded=False), ("int8",), (None, "int8", None)),
    ],
)
def test_each_rung_steps_down_from_what_the_attempt_ran_with(
    ran: Attempt, rungs: tuple[str, ...], expected: tuple[object, object, object] | None
) -> None:
    rung = next_rung(ran, rungs)
    got = None if rung is None else (rung.batch_size, rung.compute_type, rung.device_kind)
    assert got == expected


def test_only_out_of_memory_failures_step_down_the_ladder() -> None:
    ran = Attempt(8, "float16", "cuda")
    assert decide_retry(K.OOM, 1, 1000, LADDER, "x", ran).fallback is not None
    assert decide_retry(K.CRASH, 1, 1000, LADDER, "x", ran).fallback is None
    assert decide_retry(K.HANG, 1, 1000, LADDER, "x", ran).fallback is None
    assert decide_retry(K.OOM, 1, 1000, LADDER, "x").fallback is None  # no ladder without ran


def test_a_rung_is_never_refused_for_lack_of_attempts_and_resets_the_floor() -> None:
    d = decide_retry(K.OOM, 3, 1000, LADDER, "x", Attempt(1, "float16", "cuda"), 2)
    assert d.retry and d.estimate_floor_mb == 0.0
    assert "attempt 4 on int8" in d.reason


def test_the_default_limit_covers_the_whole_ladder() -> None:
    """batch 4 -> 2 -> 1 -> int8 -> CPU: four rungs, then the usual three attempts."""
    job = Job("j", "small", compute_type="float16", batch_size=4)
    ran = Attempt(4, "float16", "cuda")
    seen: list[tuple[int, str, str | None]] = []
    while True:
        job.attempts += 1
        job.state = JobState.PROCESSING
        outcome = apply_failure(job, K.OOM, "out of memory", 1000.0, 0.0, LADDER, ran)
        if not outcome.retry:
            break
        seen.append((job.batch_size, job.compute_type, job.device_kind))
        ran = Attempt(job.batch_size, job.compute_type, job.device_kind or "cuda")
    assert seen == [(2, "float16", None), (1, "float16", None), (1, "int8", None),
                    (1, "int8", "cpu"), (1, "int8", "cpu"), (1, "int8", "cpu")]  # fmt: skip
    assert job.fallback_steps == 4 and job.attempts == 7
    assert job.state is JobState.FAILED and "gave up after 7 attempts" in (job.error or "")
    reasons = [h.reason for h in job.history if h.to_state is JobState.PENDING]
    assert "attempt 2 on batch size 2" in reasons[0]
    assert "attempt 5 on the CPU (int8)" in reasons[3]
    assert "retry 6/7" in reasons[4]


def test_without_a_rung_the_estimate_is_raised_as_before() -> None:
    job = Job("j", "small", compute_type="float16", batch_size=1, attempts=1)
    job.state = JobState.PROCESSING
    out = apply_failure(job, K.OOM, "x", 1000.0, 0.0, SETTINGS, Attempt(1, "float16", "cuda"))
    assert out.retry and out.fallback is None and job.estimate_floor_mb == 1500.0


def test_unknown_rungs_are_refused() -> None:
    with pytest.raises(ValueError, match="fallback rungs are int8 and cpu"):
        Settings(fallback=("fp8",))
