"""The scheduler inside the service: the store, the runner thread, and events.

The runner owns live jobs on its own thread; this class keeps the store in
step with it (every state change is one store transaction, written from the
runner's history so the lifecycle is never applied twice) and hands events to
subscribers. On start it recovers what a killed service left behind.
"""

from __future__ import annotations

import contextlib
import threading
import time

from vramscribe.devices.select import pick_devices
from vramscribe.paths import new_run_dir
from vramscribe.runtime.events import JobChanged, ProgressMade, RunnerEvent, Tick, payload, task_of
from vramscribe.runtime.persist import StorePersister, end_orphan, task_from_record
from vramscribe.runtime.runner import Runner, Task
from vramscribe.runtime.timeline import Timeline
from vramscribe.service.config import ServiceConfig
from vramscribe.service.events import Broadcaster, Event
from vramscribe.store.store import JobRecord, Store

PROGRESS_WRITE_S = 1.0


class SchedulerService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = (
            Store(config.store_url) if config.store_url else Store.open_data_dir(config.data_dir)
        )
        self.book = self.store.load_footprints()
        self.devices = pick_devices(config.device, config.cpu_threads)
        self.runner = Runner(
            self.devices,
            config.settings,
            self.book,
            run_dir=new_run_dir(config.data_dir),
            hang_timeout_s=config.hang_timeout_s,
            clock=time.time,
        )
        self.events = Broadcaster()
        self.timeline = Timeline(self.runner, self.runner.run_dir / "timeline.jsonl")
        self.runner.listeners.append(self.timeline)
        self.runner.listeners.append(self._on_runner_event)
        self.persister = StorePersister(self.store)
        self._progress_written: dict[str, float] = {}
        self._final: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recovered: list[str] = []
        self.orphans_ended: list[int] = []

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        moved, pids = self.store.recover(time.time())
        self.recovered = moved
        self.orphans_ended = [pid for pid in pids if end_orphan(pid)]
        for rec in self.store.pending():
            self.persister.known(rec.id, len(rec.history))
            self.runner.add(task_from_record(rec))
        self._thread = threading.Thread(
            target=self.runner.run_until, args=(self._stop,), name="scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.timeline.close()
        with contextlib.suppress(Exception):
            self.store.save_footprints(self.book)
        self.store.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- called from request handlers ---------------------------------------------
    def submit(self, rec: JobRecord) -> JobRecord:
        self.store.add(rec)
        self.persister.known(rec.id, 0)
        task = task_from_record(rec)
        self.runner.call_soon(lambda: self.runner.add(task))
        return rec

    def cancel(self, job_id: str, timeout: float = 10.0) -> None:
        done = self.final_event(job_id)
        self.runner.call_soon(lambda: self.runner.cancel(job_id, "cancelled by client"))
        done.wait(timeout)

    def final_event(self, job_id: str) -> threading.Event:
        with self._lock:
            ev = self._final.setdefault(job_id, threading.Event())
        rec = self.store.get(job_id, with_history=False)
        if rec is not None and rec.status.is_final:
            ev.set()
        return ev

    def live(self, job_id: str) -> Task | None:
        """The runner's view of a job (progress, pending reason), if it is live."""
        return self.runner.tasks.get(job_id)

    # -- runner thread -------------------------------------------------------------
    def _on_runner_event(self, event: RunnerEvent) -> None:
        task = task_of(event)
        now = time.time()
        if isinstance(event, JobChanged):
            self._persist(event.task)
        elif isinstance(event, ProgressMade):
            last = self._progress_written.get(event.task.job.id, 0.0)
            if now - last >= PROGRESS_WRITE_S:
                self._progress_written[event.task.job.id] = now
                self.store.update(event.task.job.id, progress_s=event.task.progress_s)
        elif isinstance(event, Tick):
            return
        public: Event = payload(event)
        if task is not None:
            public.update(
                job_id=task.job.id,
                state=task.job.state.value,
                progress_s=task.progress_s,
                audio_s=task.job.audio_s,
            )
        public["time"] = now
        self.events.publish(public)

    def _persist(self, task: Task) -> None:
        self.persister.persist(task)
        if task.job.state.is_final:
            self.final_event(task.job.id).set()
            self.store.save_footprints(self.book)
