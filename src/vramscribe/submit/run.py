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
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vramscribe.audio import probe_duration
from vramscribe.core.footprints import FootprintBook
from vramscribe.devices.base import Device
from vramscribe.devices.select import pick_devices
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import BadInput, InputNotFound
from vramscribe.paths import host_dir, new_run_dir
from vramscribe.runtime.events import JobChanged, RunnerEvent
from vramscribe.runtime.ledger import LEDGER_FILE, HostLedger, attach, share_reservations
from vramscribe.runtime.persist import StorePersister, end_orphan, task_from_record
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task
from vramscribe.runtime.timeline import Timeline
from vramscribe.settings import RunSettings
from vramscribe.store.leases import Leases
from vramscribe.store.records import JobRecord
from vramscribe.store.store import FOOTPRINT_KEY, Store
from vramscribe.submit.build import build_job, choose_model
from vramscribe.submit.request import JobRequest


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
        runner.listeners += [self.timeline, self.persister, self._save_footprints]
        self.orphans_ended: list[int] = []
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
        model = choose_model(request.model, request.engine)
        now = self.runner.clock() if submitted_at is None else submitted_at
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
        if self.leases is not None and failure is None:
            record = self.leases.add(new.record, now)  # ours from the start
        else:
            record = self.store.add(new.record)
        if not self.schedules:
            return record  # a scheduler claims it from the store
        if failure is not None:
            self._on_runner_thread(lambda: self.runner.fail_now(new.task, failure))
        else:
            self._on_runner_thread(lambda: self.runner.add(new.task))
        return record

    def resume(self, record: JobRecord, engine: EngineOptions | None = None) -> Task:
        """Queue a stored pending job again, its history carried over (``engine``: new options)."""
        task = task_from_record(record)
        if engine is not None:
            task.engine = engine
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

    def _save_footprints(self, event: RunnerEvent) -> None:
        if isinstance(event, JobChanged) and event.task.job.state.is_final:
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
