"""The scheduler inside the service: a run on its own thread, and events for subscribers.

The runner owns live jobs on its own thread; the run's persister keeps the
store in step with it (every state change is one store transaction, written
from the runner's history so the lifecycle is never applied twice). This class
hands the runner's events to subscribers, tells waiting requests when a job
ends, and on start recovers what a killed service left behind.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vramscribe.cluster.node import SchedulerLock, node_id, scheduler_lock_path
from vramscribe.cluster.ownership import Ownership
from vramscribe.cluster.ray_service import RayScheduling
from vramscribe.cluster.watch import StoreWatcher, cancel_in_store
from vramscribe.runtime.events import JobChanged, ProgressMade, RunnerEvent, Tick, payload, task_of
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task
from vramscribe.service.events import Broadcaster, Event
from vramscribe.service.schemas import DeviceOut
from vramscribe.service.submissions import SubmitThread
from vramscribe.service.views import device_report, job_json
from vramscribe.service.webhooks import Webhooks
from vramscribe.settings import ServiceConfig
from vramscribe.store.callbacks import Callbacks
from vramscribe.store.store import Store
from vramscribe.submit.run import Run, open_run

PROGRESS_WRITE_S = 1.0


class SchedulerService:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.uploads = config.data_dir / "uploads"
        """Uploaded audio of accepted jobs."""
        self.transcripts = config.data_dir / "transcripts"
        """Every job's transcripts, one file per format, named after the job."""
        for folder in (self.uploads, self.transcripts):
            folder.mkdir(parents=True, exist_ok=True)
        store = (
            Store(config.store_url) if config.store_url else Store.open_data_dir(config.data_dir)
        )
        self.run: Run = open_run(store, config.run, config.data_dir)
        self.ownership: Ownership | None = None
        self._watcher: StoreWatcher | None = None
        self.ray: RayScheduling | None = None
        if config.api_only:
            self.run.schedules = False
        elif config.ray_address:
            self._start_ray_head(config)
        else:
            try:
                self.ownership = Ownership(
                    self.run,
                    config.data_dir,
                    config.store_url,
                    address=config.address,
                    lease_s=config.lease_s,
                )
            except BaseException:
                self.run.close()
                raise
        self.events = Broadcaster()
        self.runner.listeners.append(self._on_runner_event)
        self._progress_written: dict[str, float] = {}
        self._final: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.recovered: list[str] = []
        self.draining = False
        """Set on SIGTERM: new submissions are refused while running jobs finish."""
        self.webhooks = Webhooks(Callbacks(store), self._job_json, config.token)
        self.submissions = SubmitThread(self.run)
        """New jobs are submitted on this one thread (see ``service/submissions.py``)."""

    @property
    def store(self) -> Store:
        return self.run.store

    @property
    def runner(self) -> Runner:
        return self.run.runner

    # -- lifecycle -----------------------------------------------------------------
    def _start_ray_head(self, config: ServiceConfig) -> None:
        """The head of a Ray cluster: the store's one scheduler, running jobs on the nodes."""
        from vramscribe.cluster.ray_head import ray_address

        self.run.schedules = False
        try:
            self._scheduler_lock = SchedulerLock.acquire(
                scheduler_lock_path(config.data_dir, config.store_url),
                node=node_id(config.data_dir),
                address=config.address,
            )
            address = ray_address(config.ray_address or "auto")
            self.ray = RayScheduling(self.run, address, config.shared_path, self._on_runner_event)
        except BaseException:
            self.run.close()
            raise

    def start(self) -> None:
        if self.ray is not None:
            self.recovered = self.ray.start()
            return
        if self.ownership is None:  # API only: a scheduler elsewhere runs the jobs
            self._watcher = StoreWatcher(self.store, self._final, self._lock)
            self._watcher.start()
            return
        self.recovered = self.ownership.start()
        self.run.orphans_ended = self.ownership.orphans_ended
        self.run.start()
        self.webhooks.start()

    def stop(self) -> None:
        self.submissions.stop()
        if self.ray is not None:
            self.ray.stop()
            self._scheduler_lock.release()
        if self._watcher is not None:
            self._watcher.stop()
        self.run.stop()
        self.webhooks.stop()
        if self.ownership is not None:
            self.ownership.stop()
        self.run.close()

    def _job_json(self, job_id: str) -> dict[str, Any] | None:
        rec = self.store.get(job_id)
        return None if rec is None else job_json(rec, None)

    @property
    def alive(self) -> bool:
        if self.ray is not None:
            return self.ray.alive
        if self._watcher is not None:
            return self._watcher.alive
        return self.run.alive

    def drain(self, timeout_s: float) -> bool:
        """Stop admitting work and wait, up to ``timeout_s``, for running jobs to finish.

        Pending jobs stay pending in the store, for the next start; whether
        everything that was running finished in time is returned.
        """
        self.draining = True
        self.runner.call_soon(lambda: setattr(self.runner, "admitting", False))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive:
            if not self.runner.workers:
                return True
            time.sleep(0.1)
        return not self.runner.workers

    def devices(self) -> list[DeviceOut]:
        """Every device this service schedules: its own, and under Ray every node's."""
        if self.ray is None:
            return device_report(self.runner)
        out = []
        for link in list(self.ray.head.nodes.values()):
            for dev in link.devices:
                out.append(DeviceOut(**{**dev, "id": f"{link.node_id[:8]}/{dev['id']}"},
                                     node=link.node_id))  # fmt: skip
        return out

    # -- called from request handlers ---------------------------------------------
    def cancel(self, job_id: str, timeout: float = 10.0) -> None:
        if self.ownership is None or job_id not in self.runner.tasks:  # also under Ray
            cancel_in_store(self.store, job_id, time.time())  # queued or running elsewhere
            return
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
        if self.ray is not None:  # the head's view, with the node a reason is about
            return self.ray.head.tasks.get(job_id)
        return self.runner.tasks.get(job_id)

    # -- runner thread -------------------------------------------------------------
    def _on_runner_event(self, event: RunnerEvent) -> None:
        task = task_of(event)
        now = time.time()
        if isinstance(event, JobChanged):
            if event.task.job.state.is_final:
                self._progress_written.pop(event.task.job.id, None)
                self.final_event(event.task.job.id).set()
                self.webhooks.job_ended(event.task.job.id)
        elif isinstance(event, ProgressMade):
            # The first write waits PROGRESS_WRITE_S too: a job shorter than that
            # (most of a burst of short ones) never needed one before its result.
            last = self._progress_written.setdefault(event.task.job.id, now)
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
