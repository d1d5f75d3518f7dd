"""One thread that submits the service's new jobs, in groups.

Submitting a job probes its audio, names its outputs and stores it: short
steps that each give up the interpreter's lock for a moment (a file read, an
``lstat``, a database call). When every request did them on a thread of its
own, sixteen concurrent submissions meant sixteen threads taking that lock
from one another hundreds of times per job, and the service spent more time
switching threads than submitting. Here requests queue for one thread, which
takes everything queued so far and submits it with
:meth:`~vramscribe.submit.run.Run.submit_many` (one transaction for the group);
a request's own answer still comes only once its job is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading

from vramscribe.store.records import JobRecord
from vramscribe.submit.request import JobRequest
from vramscribe.submit.run import Run

Outcome = JobRecord | Exception
_Item = tuple[list[JobRequest], asyncio.AbstractEventLoop, "asyncio.Future[list[Outcome]]"]
_Answer = tuple["asyncio.Future[list[Outcome]]", list[Outcome]]


class SubmitThread:
    """``await submit(requests)``: each request's record, or the error that refused it."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="submissions", daemon=True)
        self._thread.start()

    async def submit(self, requests: list[JobRequest]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        self._queue.put((requests, loop, future))
        return await future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._submit(group)
                    return
                group.append(more)
            self._submit(group)

    def _submit(self, group: list[_Item]) -> None:
        requests = [r for reqs, _, _ in group for r in reqs]
        try:
            outcomes: list[Outcome] = self.run.submit_many(requests)
        except Exception:  # an error no request's refusal covers: each alone, so it fails alone
            outcomes = [self._alone(r) for r in requests]
        answers: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
        start = 0
        for reqs, loop, future in group:
            answers.setdefault(loop, []).append((future, outcomes[start : start + len(reqs)]))
            start += len(reqs)
        for loop, pairs in answers.items():  # one wake-up of each event loop per group
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for them
                loop.call_soon_threadsafe(_resolve, pairs)

    def _alone(self, request: JobRequest) -> Outcome:
        try:
            (outcome,) = self.run.submit_many([request])
        except Exception as exc:
            return exc
        return outcome


def _resolve(pairs: list[_Answer]) -> None:
    for future, outcomes in pairs:
        if not future.done():  # its request was cancelled (the client went away)
            future.set_result(outcomes)
