"""``vramscribe.Scheduler``: the CLI's scheduler, from Python, for programs that add work over time.

It is the same run a ``vramscribe transcribe`` batch opens (:func:`open_run`,
:meth:`Run.submit`, the runner, its planner and worker processes), with the
runner on a thread of its own, as the service runs it. Results and events are
built on that thread from the runner's own events and handed over under one
lock, so the caller's thread only ever reads finished values.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from vramscribe.api.result import Event, Result, event_of, result_of
from vramscribe.core.jobs import JobState
from vramscribe.core.settings import Settings
from vramscribe.errors import InvalidRequest, VramscribeError
from vramscribe.outputs import output_path
from vramscribe.runtime.events import JobChanged, RunnerEvent, task_of
from vramscribe.runtime.task import Task
from vramscribe.settings import RunSettings
from vramscribe.store.store import Store
from vramscribe.submit.build import choose_model
from vramscribe.submit.request import JobRequest, new_job_id, parse_request_priority
from vramscribe.submit.run import Run, open_run

MAX_EVENTS = 100_000
"""Events kept for :meth:`Scheduler.events` that nobody read yet; the oldest go first."""

KEEP_ALIVE_S = 10.0
"""How long an idle instance waits for the next file of its model (work may come later)."""


class Scheduler:
    """Transcribe files on this machine's GPUs (or CPU) without running out of memory.

    Use it as a context manager: leaving the block normally waits for every
    submitted file; leaving it with an exception cancels what is left. ::

        with vramscribe.Scheduler(model="tiny.en", device="cpu") as scheduler:
            job = scheduler.submit("talk.mp3", language="en")
            for result in scheduler.results():
                print(result.path, result.text or result.error)

    ``options`` are per-file defaults, the fields of
    :class:`~vramscribe.submit.request.JobRequest` (``language``, ``priority``,
    ``beam_size``, ``vad_filter``, ``word_timestamps``, ``initial_prompt``,
    ``hotwords``, ``compute_type``, ``batch_size``); :meth:`submit` overrides
    them per file. ``formats`` (``txt``, ``srt``, ``vtt``, ``json``) also writes
    each transcript to files, next to the input or under ``out_dir``.
    A bad option or an unknown model raises here, before any work.
    """

    def __init__(
        self,
        model: str = "tiny.en",
        device: str = "auto",
        *,
        formats: Iterable[str] = (),
        out_dir: str | Path | None = None,
        max_instances: int | None = None,
        cpu_threads: int = 1,
        keep_alive_s: float = KEEP_ALIVE_S,
        data_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        self._template = _request(Path(), model, formats, **options)
        choose_model(self._template.model, self._template.engine)
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self._own_dir = data_dir is None
        folder = (
            Path(tempfile.mkdtemp(prefix="vramscribe-")) if data_dir is None else Path(data_dir)
        )
        self._folder = folder
        scheduler = Settings(keep_alive_s=keep_alive_s, max_instances_total=max_instances or 64)
        settings = RunSettings(device=device, cpu_threads=cpu_threads, scheduler=scheduler)
        self._cond = threading.Condition()
        self._submitted: set[str] = set()
        self._results: dict[str, Result] = {}
        self._finished: list[str] = []
        self._read = 0
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._closed = False
        try:
            self._run: Run = open_run(
                Store.open_data_dir(folder), settings, folder, records_bad_input=True
            )
        except BaseException:
            self._remove_folder()
            raise
        self._run.runner.listeners.append(self._listen)
        self._run.start()

    # -- work --------------------------------------------------------------------
    def submit(self, path: str | Path, *, root: str | Path | None = None, **options: Any) -> str:
        """Queue one file; returns its job id. ``options`` override the defaults for it.

        A file that cannot be read is not an exception: its result carries the
        error. ``root``: the folder the file was found under (outputs under
        ``out_dir`` mirror the tree below it; default: the file's folder).
        """
        self._check_open()
        file = Path(path)
        formats = options.pop("formats", self._template.formats)
        values = {**options, "model": options.get("model", self._template.model)}
        request = _request(file, formats=formats, template=self._template, **values)
        base = Path(root) if root is not None else file.parent
        outputs = tuple((f, output_path(file, base, f, self._out_dir)) for f in request.formats)
        request = replace(request, outputs=outputs, input_root=base)
        with self._cond:
            self._submitted.add(request.job_id)
        try:
            self._run.submit(request)
        except BaseException:
            with self._cond:
                self._submitted.discard(request.job_id)
            raise
        return request.job_id

    def cancel(self, job_id: str) -> None:
        """Cancel a job: a waiting one never starts, a running one is stopped."""
        if job_id not in self._submitted:
            raise KeyError(f"no job {job_id}")
        runner = self._run.runner
        runner.call_soon(lambda: runner.cancel(job_id))

    def cancel_pending(self) -> None:
        """Cancel every job that has not started; running ones finish."""
        runner = self._run.runner

        def cancel() -> None:
            for task in list(runner.tasks.values()):
                if task.job.state is JobState.PENDING:
                    runner.cancel(task.job.id, "cancelled before it started")

        runner.call_soon(cancel)

    def wait(
        self, job_ids: Iterable[str] | None = None, timeout: float | None = None
    ) -> list[Result]:
        """Block until these jobs (default: all submitted) end; their results, in that order.

        Raises :class:`TimeoutError` if ``timeout`` seconds pass first.
        """
        with self._cond:
            ids = list(self._submitted) if job_ids is None else list(job_ids)
            unknown = [i for i in ids if i not in self._submitted]
            if unknown:
                raise KeyError(f"no job {unknown[0]}")
            if not self._wait_for(lambda: all(i in self._results for i in ids), timeout):
                raise TimeoutError(f"{len(ids)} job(s) not finished after {timeout} s")
            return [self._results[i] for i in ids]

    def results(self) -> Iterator[Result]:
        """Results in the order the jobs end, each once; stops when nothing is left running.

        Files submitted while iterating are waited for too.
        """
        while True:
            with self._cond:
                self._wait_for(lambda: self._read < len(self._finished) or self._idle())
                if self._read >= len(self._finished):
                    return
                result = self._results[self._finished[self._read]]
                self._read += 1
            yield result

    def events(self, follow: bool = False) -> Iterator[Event]:
        """What happens to the jobs as it happens (new states, progress, segments, failures).

        Stops once every submitted job has ended and its events were read, or,
        with ``follow``, only when the scheduler is closed.
        """
        while True:
            with self._cond:
                self._wait_for(
                    lambda: bool(self._events) or self._closed or (not follow and self._idle())
                )
                if not self._events:
                    return
                event = self._events.popleft()
            yield event

    # -- the end -----------------------------------------------------------------
    def close(self, cancel: bool = False) -> None:
        """Wait for every job (``cancel``: stop them all instead), then end the workers."""
        if self._closed:
            return
        if cancel:
            runner = self._run.runner
            runner.call_soon(lambda: runner.stop("cancelled: the scheduler was closed"))
        with self._cond:
            if not self._closed:
                self._wait_for(self._idle)
        self._run.stop()
        self._run.close()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._remove_folder()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None)

    # -- plumbing ------------------------------------------------------------------
    def _wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """``Condition.wait_for`` (lock held) that notices a scheduler thread that died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not predicate():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self._closed and not self._run.alive:
                raise VramscribeError("the scheduler's thread stopped; see the log")
            self._cond.wait(min(1.0, left) if left is not None else 1.0)
        return True

    def _idle(self) -> bool:
        return len(self._results) >= len(self._submitted)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the scheduler is closed")

    def _listen(self, event: RunnerEvent) -> None:
        """On the runner's thread: keep the event, and the result of a job that ended."""
        task = task_of(event)
        if task is None:
            return
        with self._cond:
            self._events.append(event_of(event, task))
            if isinstance(event, JobChanged) and task.job.state.is_final:
                self._finish(task)
            self._cond.notify_all()

    def _finish(self, task: Task) -> None:
        job = task.job
        if job.id in self._results:
            return
        result_file = self._run.runner.run_dir / "results" / f"{job.id}.{job.attempts}.json"
        self._results[job.id] = result_of(task, result_file if job.attempts else None)
        self._finished.append(job.id)

    def _remove_folder(self) -> None:
        if self._own_dir:
            shutil.rmtree(self._folder, ignore_errors=True)


def _request(
    file: Path,
    model: str | None = None,
    formats: Iterable[str] = (),
    *,
    template: JobRequest | None = None,
    **options: Any,
) -> JobRequest:
    """A checked request: ``options`` over ``template`` (priority names are read too)."""
    if isinstance(options.get("priority"), str):
        options["priority"] = parse_request_priority(options["priority"])
    if model is not None:
        options["model"] = model
    outputs = tuple(
        (str(fmt), Path()) for fmt in ([formats] if isinstance(formats, str) else formats)
    )
    try:
        if template is None:
            return JobRequest(input=file, outputs=outputs, **options)
        return replace(template, input=file, outputs=outputs, job_id=new_job_id(), **options)
    except TypeError as exc:
        raise InvalidRequest(f"unknown option: {exc}") from None
