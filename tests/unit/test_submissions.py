"""The service's submission thread: requests that arrive together are submitted together,
each gets its own answer, and an unexpected error fails only the request that caused it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vramscribe.service.submissions import SubmitThread


class FakeRun:
    """``Run.submit_many`` by name: ``hold`` waits until released, ``boom`` raises an error
    no refusal covers (a bug, a broken row). Stands in for the run to make the grouping
    observable; the real submission path is tested through the service."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()

    def submit_many(self, requests: list[str]) -> list[Any]:
        self.groups.append(list(requests))
        if "hold" in requests:
            self.release.wait(10)
        if "boom" in requests:
            raise RuntimeError("unexpected")
        return [f"job-{r}" for r in requests]


def test_requests_queued_together_are_one_group_and_a_failure_stays_alone() -> None:
    run = FakeRun()
    thread = SubmitThread(run)  # type: ignore[arg-type]

    async def scenario() -> list[list[Any]]:
        first = asyncio.ensure_future(thread.submit(["hold"]))  # type: ignore[list-item]
        while not run.groups:  # the thread is busy with the first request
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(thread.submit([name]))  # type: ignore[list-item]
                for name in ("a", "boom", "b")]  # fmt: skip
        await asyncio.sleep(0.05)
        run.release.set()
        return [await first] + [await f for f in rest]

    try:
        answers = asyncio.run(scenario())
    finally:
        thread.stop()
    assert answers[0] == ["job-hold"]
    assert answers[1] == ["job-a"] and answers[3] == ["job-b"]
    assert isinstance(answers[2][0], RuntimeError)
    # The three that queued behind the first went as one group; it failed as a whole,
    # so each was submitted alone, and only the one that raised got the error.
    assert run.groups == [["hold"], ["a", "boom", "b"], ["a"], ["boom"], ["b"]]
