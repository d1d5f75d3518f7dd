"""A run: a runner with its store, as a CLI batch and the service both use it.

:func:`open_run` picks the devices, loads the learned footprints from the store
and attaches the run's timeline and the store persister to the runner; with
``recover`` it also puts jobs a killed run left active back in the queue and
ends the workers it left behind. :meth:`Run.submit` is the one way a new job
enters: the CLI calls it per file, the service per request.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO

from vramscribe.audio import probe_duration
from vramscribe.channels import channel_count
from vramscribe.core.footprints import FootprintBook
from vramscribe.devices.base import Device
from vramscribe.devices.select import pick_devices
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import BadInput, InputNotFound, VramscribeError
from vramscribe.naming import Claims, InputStamp, claim
from vramscribe.paths import host_dir, new_run_dir
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.ledger import LedgerWriter
from vramscribe.runtime.persist import StorePersister, end_orphan, task_from_record
from vramscribe.runtime.reservations import LEDGER_FILE, HostLedger, attach, share_reservations
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.split import SplitMerger
from vramscribe.runtime.task import Task
from vramscribe.runtime.timeline import Timeline
from vramscribe.settings import RunSettings
from vramscribe.store.group import GroupCommit
from vramscribe.store.leases import Leases
from vramscribe.store.records import JobRecord
from vramscribe.store.store import FOOTPRINT_KEY, Store
from vramscribe.submit.build import ModelChoice, NewJob, build_job, choose_model
from vramscribe.submit.request import JobRequest
from vramscribe.submit.split import channel_jobs

FOOTPRINTS_SAVE_S = 5.0
"""How often a run writes its learned footprints to the store while jobs end."""


class Run:
    """One runner, its store, timeline and persister; see :func:`open_run`."""

    def __init__(
        self, store: Store, runner: Runner, settings: RunSettings, *, records_bad_input: bool
    ) -> None:
        self.store = store
        self.runner = runner
        self.settings = settings
        self.records_bad_input = records_bad_input
        """A batch keeps unreadable inputs as failed jobs; the service refuses them."""
        self.timeline = Timeline(runner, runner.run_dir / "timeline.jsonl")
        self.persister = StorePersister(store)
        self.adds = GroupCommit(store)
        """New jobs from concurrent submissions share a transaction (see store/group.py)."""
        self.leased_adds = GroupCommit(store, self._add_leased, self._add_leased_one)
        """The same for a run that schedules a shared store: each job stored leased to it."""
        runner.listeners += [self.timeline, self.persister, self._save_footprints]
        runner.listeners.append(LedgerWriter(store.ledger))
        self.claims = Claims()
        """The outputs of this run's unfinished jobs (see :func:`vramscribe.naming.claim`)."""
        runner.listeners.append(self._release_claims)
        self.splits = SplitMerger(runner)
        runner.listeners.append(self.splits)
        self.orphans_ended: list[int] = []
        self._footprints_saved = float("-inf")
        self.leases: Leases | None = None
        """This run's leases when it schedules a shared store (see ``cluster.ownership``)."""
        self.schedules = True
        """False for an API-only service: jobs are stored for a scheduler elsewhere."""
        self.ledger: HostLedger | None = None
        """The host-wide reservation ledger this run plans with (left on close)."""
        self.footprint_key = FOOTPRINT_KEY
        """The kind of GPU this run's footprints were learned on (``footprint_scope``)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def book(self) -> FootprintBook:
        return self.runner.book

    # -- jobs ------------------------------------------------------------------------
    def submit(self, request: JobRequest, submitted_at: float | None = None) -> JobRecord:
        """Resolve the model, probe the audio, store the job and queue it; returns its record.

        ``submitted_at`` (default: now) lets a batch submit its files as one submission,
        so that among equal jobs the longest file goes first.

        An unknown model raises (nothing is stored). Audio that cannot be read
        raises too, unless this run records bad input: then the job is stored
        and failed at once, so a batch's summary names it.
        """
        now = self.runner.clock() if submitted_at is None else submitted_at
        prepared = self._prepare(request, now, self._sources([request]))
        if isinstance(prepared, JobRecord):
            return prepared
        try:
            record = self._store(*prepared)
        except BaseException:
            self.claims.drop(prepared[0].task.job.id)
            raise
        self._queue(*prepared)
        return record

    def submit_many(self, requests: list[JobRequest]) -> list[JobRecord | Exception]:
        """:meth:`submit` for each request, stored in one transaction; each one's record or error.

        A request refused (unknown model, unreadable audio, a taken id) fails
        alone: the others are stored and queued.
        """
        now = self.runner.clock()
        sources = self._sources(requests)
        built: list[tuple[NewJob, str | None] | JobRecord | Exception] = []
        for request in requests:
            try:
                built.append(self._prepare(request, now, sources))
            except VramscribeError as exc:
                built.append(exc)
        new = [b for b in built if isinstance(b, tuple)]
        stored = iter(self._store_many(new))
        out: list[JobRecord | Exception] = []
        for item in built:
            if not isinstance(item, tuple):
                out.append(item)  # refused, or a split file already stored with its channels
                continue
            record = next(stored)
            if isinstance(record, Exception):
                self.claims.drop(item[0].task.job.id)
            else:
                self._queue(*item)
            out.append(record)
        return out

    def _prepare(
        self, request: JobRequest, now: float, sources: Mapping[str, InputStamp]
    ) -> tuple[NewJob, str | None] | JobRecord:
        """The job to store for ``request`` (with distinct outputs, claimed at once so the
        next request sees them), or, for a file split by channel, the parent's record
        (parent and children are stored at once).

        ``sources`` is the output ledger's record of the request's plain outputs, read
        once for a whole group of requests.
        """
        model = choose_model(request.model, request.engine)
        outputs = claim(request.input, request.outputs, sources, self.claims)
        if outputs != request.outputs:
            request = replace(request, outputs=outputs)
        if request.split_channels and (channels := self._channels(request)) > 1:
            return self._submit_split(request, model, channels, now)
        new, failure = self._build(request, model, now)
        self.claims.add(new.task.job.id, new.task.input, new.task.outputs)
        return new, failure

    def _sources(self, requests: list[JobRequest]) -> dict[str, InputStamp]:
        """What the output ledger records of the plain outputs of ``requests``: one query."""
        return self.store.ledger.sources(p for r in requests for _, p in r.outputs)

    def _build(
        self, request: JobRequest, model: ModelChoice, now: float
    ) -> tuple[NewJob, str | None]:
        """The job for ``request`` and, if its audio is unreadable and recorded, why."""
        failure: str | None = None
        try:
            audio_s = probe_duration(request.input)
        except (BadInput, InputNotFound) as exc:
            if not self.records_bad_input:
                raise
            audio_s, failure = 0.0, str(exc)
        new = build_job(
            request, model, cpu_threads=self.settings.cpu_threads, now=now, audio_s=audio_s
        )
        return new, failure

    def _store(self, new: NewJob, failure: str | None) -> JobRecord:
        """Store one new job: leased to this run from the start when it schedules a shared
        store (the heartbeat's claims must not take it too), else through the group commit."""
        if self._leased(failure):
            return self.leased_adds.add(new.record)
        return self.adds.add(new.record)

    def _store_many(self, new: list[tuple[NewJob, str | None]]) -> list[JobRecord | Exception]:
        """:meth:`_store` for each job, the leased ones in one transaction and the rest in
        another; each one's stored record, or the error that refused it, in order."""
        leased = [self._leased(failure) for _, failure in new]
        mine = self.leased_adds.add_each([j.record for (j, f) in new if self._leased(f)])
        plain = self.adds.add_each([j.record for (j, f) in new if not self._leased(f)])
        out_leased, out_plain = iter(mine), iter(plain)
        return [next(out_leased) if lease else next(out_plain) for lease in leased]

    def _leased(self, failure: str | None) -> bool:
        return self.leases is not None and failure is None

    def _add_leased(self, records: list[JobRecord]) -> list[JobRecord]:
        assert self.leases is not None
        return self.leases.add_many(records, self.runner.clock())

    def _add_leased_one(self, record: JobRecord) -> JobRecord:
        return self._add_leased([record])[0]

    def _queue(self, new: NewJob, failure: str | None) -> None:
        if not self.schedules:
            return  # API only: a scheduler sharing the store claims it
        if failure is not None:
            self._on_runner_thread(lambda: self.runner.fail_now(new.task, failure))
        else:
            self._on_runner_thread(lambda: self.runner.add(new.task))

    def _channels(self, request: JobRequest) -> int:
        """The input's channel count; 1 when it cannot be read (the usual path reports why)."""
        try:
            return channel_count(request.input)
        except (BadInput, InputNotFound):
            return 1

    def _submit_split(
        self, request: JobRequest, model: ModelChoice, channels: int, now: float
    ) -> JobRecord:
        """A parent job and one child per channel (:mod:`vramscribe.submit.split`)."""
        audio_s = probe_duration(request.input)
        parent, children, group = channel_jobs(
            request, model, channels=channels, folder=self.runner.run_dir / "channels",
            cpu_threads=self.settings.cpu_threads, now=now, audio_s=audio_s,
        )  # fmt: skip
        if self.leases is not None:  # ours from the start, like a single job
            record = self.leases.add(parent.record, now)
            for child in children:
                self.leases.add(child.record, now)
        else:
            record = self.store.add(parent.record)
            self.store.add_many([c.record for c in children])
        self.splits.add(group)
        reason = f"waiting for its {channels} channels"

        self.claims.add(parent.task.job.id, parent.task.input, parent.task.outputs)

        def queue() -> None:
            self.runner.hold(parent.task, reason, [c.task.job.id for c in children])
            for child in children:
                self.runner.add(child.task)

        self._on_runner_thread(queue)
        return record

    def resume(self, record: JobRecord, engine: EngineOptions | None = None) -> Task:
        """Queue a stored pending job again, its history carried over (``engine``: new options)."""
        task = task_from_record(record)
        if engine is not None:
            task.engine = engine
        self.claims.add(task.job.id, task.input, task.outputs)
        self.persister.known(record.id, len(record.history))
        self._on_runner_thread(lambda: self.runner.add(task))
        return task

    def recover(self) -> list[str]:
        """Requeue the jobs a stopped run left active and end its workers; the ids moved."""
        moved, pids = self.store.recover(self.runner.clock())
        self.orphans_ended = [pid for pid in pids if end_orphan(pid)]
        return moved

    # -- a runner on its own thread (the service) ---------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.runner.run_until, args=(self._stop,), name="scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Flush the timeline, keep what was learned, release the store."""
        self.timeline.close()
        if self.ledger is not None:
            with contextlib.suppress(OSError):
                self.ledger.leave()
        with contextlib.suppress(Exception):
            self.store.save_footprints(self.book, self.footprint_key)
        self.store.close()

    # -- plumbing --------------------------------------------------------------------
    def _on_runner_thread(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` now, or on the runner's thread once it has one (thread-safe)."""
        if self._thread is None:
            fn()
        else:
            self.runner.call_soon(fn)

    def _release_claims(self, event: RunnerEvent) -> None:
        if isinstance(event, JobChanged) and event.task.job.state.is_final:
            self.claims.drop(event.task.job.id)

    def _save_footprints(self, event: RunnerEvent) -> None:
        """Keep what was learned, at most every few seconds (the run's close saves the rest).

        Saving after every job wrote the whole book once per job, under the
        store's write lock, which under a burst of short jobs held up submissions.
        """
        if not (isinstance(event, JobChanged) and event.task.job.state.is_final):
            return
        now = time.monotonic()
        if now - self._footprints_saved >= FOOTPRINTS_SAVE_S:
            self._footprints_saved = now
            self.store.save_footprints(self.book, self.footprint_key)


def open_run(
    store: Store,
    settings: RunSettings,
    data_dir: Path,
    *,
    recover: bool = False,
    records_bad_input: bool = False,
) -> Run:
    """A run on ``settings.device`` with ``store``'s footprints; ``recover``: see the module.

    Its run folder is made under ``data_dir/runs`` once the devices are open;
    if they cannot be, the store is closed and nothing is left behind.
    """
    try:
        devices = pick_devices(settings.device, settings.cpu_threads)
        scope = footprint_scope(devices)
        ledger = HostLedger(host_dir() / LEDGER_FILE)
        runner = Runner(
            share_reservations(devices, ledger),
            settings.scheduler,
            store.load_footprints(scope),
            run_dir=new_run_dir(data_dir),
            hang_timeout_s=settings.hang_timeout_s,
            cpu_threads=settings.cpu_threads,
        )
    except BaseException:
        store.close()
        raise
    attach(runner, ledger)
    run = Run(store, runner, settings, records_bad_input=records_bad_input)
    run.footprint_key = scope
    run.ledger = ledger
    if recover:
        run.recover()
    return run


def footprint_scope(devices: list[Device]) -> str:
    """The key footprints are learned under: the GPUs' names (``gpu:NVIDIA H200``), so
    a book learned on one kind of GPU is not applied to another; ``default`` without GPUs."""
    names = sorted({str(getattr(d, "name", "")) for d in devices if d.kind == "cuda"})
    names = [n for n in names if n]
    return "gpu:" + "+".join(names) if names else FOOTPRINT_KEY


_HELD: list[IO[str]] = []
"""The batch lock, held for the life of the process once taken."""


def open_batch_store(folder: Path) -> tuple[Store, bool]:
    """The CLI's own job store (not the service's), and whether this run is the only one.

    Only a run that holds the batch lock may recover jobs: another run's
    in-flight jobs look exactly like a killed run's. Footprints that an earlier
    version learned into ``footprints.json`` are taken into the store once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / "batch.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        sole = True
        _HELD.append(lock)
    except BlockingIOError:
        lock.close()
        sole = False
    store = Store(f"sqlite:///{folder / 'batch.db'}")
    legacy = folder / "footprints.json"
    if legacy.is_file() and not store.has_footprints():
        with contextlib.suppress(OSError, ValueError, KeyError):
            store.save_footprints(FootprintBook.from_json(legacy.read_text()))
    return store, sole
