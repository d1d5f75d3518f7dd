"""The worker protocol: what a resumed attempt needs travels both ways."""

from __future__ import annotations

import json

from vramscribe.core.retry import FailureKind
from vramscribe.protocol import Failed, SegmentDone, WorkerSpec, decode, encode


def test_a_segment_carries_its_words_and_the_language_through_the_pipe() -> None:
    words = [{"start": 1.0, "end": 1.4, "word": " Hallo", "probability": 0.9}]
    message = SegmentDone(1.0, 2.5, " Hallo Welt", words, "de")
    assert decode(encode(message)) == message
    # A worker of an earlier version sends neither: the fields default to None.
    assert decode('{"event": "segment", "start": 0, "end": 1, "text": "x"}') == SegmentDone(
        0, 1, "x"
    )


def test_a_spec_says_where_to_resume_and_an_older_one_means_the_start() -> None:
    spec = WorkerSpec("in.wav", "out.json", 2, {"model": "base"}, 412.5)
    assert WorkerSpec.from_json(spec.to_json()) == spec
    old = json.dumps({"input": "a", "result": "b", "attempt": 1, "engine": {}})
    assert WorkerSpec.from_json(old).resume_from_s == 0.0


def test_failures_travel_as_kinds() -> None:
    assert decode(encode(Failed(FailureKind.OOM, "no room"))) == Failed(FailureKind.OOM, "no room")
