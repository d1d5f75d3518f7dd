import pytest

from vramscribe.core.retry import FailureKind, decide_retry
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
