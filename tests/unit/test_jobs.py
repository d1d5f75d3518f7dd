import pytest

from vramscribe.core.jobs import (
    TRANSITIONS,
    Job,
    JobState,
    parse_priority,
    transition,
)
from vramscribe.errors import IllegalTransition

S = JobState

LEGAL = [
    (S.PENDING, S.LOADING),
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.FAILED),
    (S.LOADING, S.PROCESSING),
    (S.LOADING, S.PENDING),
    (S.LOADING, S.FAILED),
    (S.LOADING, S.CANCELLED),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.PENDING),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.CANCELLED),
]


@pytest.mark.parametrize(("src", "dst"), LEGAL)
def test_legal_transition_is_applied_and_recorded(src: JobState, dst: JobState) -> None:
    job = Job("1", "tiny", state=src)
    record = transition(job, dst, 12.5, "because")
    assert job.state is dst
    assert job.history == [record]
    assert (record.time, record.from_state, record.to_state, record.reason) == (
        12.5,
        src,
        dst,
        "because",
    )


ILLEGAL = [(src, dst) for src in JobState for dst in JobState if (src, dst) not in set(LEGAL)]


@pytest.mark.parametrize(("src", "dst"), ILLEGAL)
def test_illegal_transition_raises_and_changes_nothing(src: JobState, dst: JobState) -> None:
    job = Job("7", "tiny", state=src)
    with pytest.raises(IllegalTransition, match="job 7"):
        transition(job, dst, 1.0, "nope")
    assert job.state is src
    assert job.history == []


def test_final_states_have_no_way_out() -> None:
    for state in (S.COMPLETED, S.FAILED, S.CANCELLED):
        assert state.is_final
        assert TRANSITIONS[state] == frozenset()


def test_full_lifecycle_with_retry_keeps_history_in_order() -> None:
    job = Job("9", "small")
    transition(job, S.LOADING, 1, "admitted")
    transition(job, S.PENDING, 2, "oom")
    transition(job, S.LOADING, 5, "admitted")
    transition(job, S.PROCESSING, 6, "loaded")
    transition(job, S.COMPLETED, 9, "done")
    assert [(t.from_state, t.to_state) for t in job.history] == [
        (S.PENDING, S.LOADING),
        (S.LOADING, S.PENDING),
        (S.PENDING, S.LOADING),
        (S.LOADING, S.PROCESSING),
        (S.PROCESSING, S.COMPLETED),
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("high", 75), ("LOW", 25), ("normal", 50), ("0", 0), (100, 100), (" urgent ", 100)],
)
def test_parse_priority(given: str | int, expected: int) -> None:
    assert parse_priority(given) == expected


@pytest.mark.parametrize("given", ["-1", 101, "soon", "1.5"])
def test_parse_priority_rejects(given: str | int) -> None:
    with pytest.raises(ValueError, match="priority"):
        parse_priority(given)
