"""Prometheus metrics: every name in this one module.

Gauges that describe the present (jobs by status, queue depth, device memory)
are computed at scrape time from the store and the runner, so they can never
drift from them; histograms and counters are fed by the runner's events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vramscribe.core.jobs import JobState
from vramscribe.core.retry import FailureKind
from vramscribe.runtime.events import (
    AttemptFailed,
    InstanceLoaded,
    JobChanged,
    MemoryReleased,
    RunnerEvent,
)
from vramscribe.runtime.task import Task
from vramscribe.service.scheduler import SchedulerService

JOBS = "vramscribe_jobs"
QUEUE_DEPTH = "vramscribe_queue_depth"
DEVICE_MEMORY = "vramscribe_device_memory_bytes"
LOAD_SECONDS = "vramscribe_model_load_seconds"
SPEED = "vramscribe_transcription_speed_ratio"
WAIT_SECONDS = "vramscribe_wait_seconds"
OOMS = "vramscribe_oom_events"
RETRIES = "vramscribe_retries"
RELEASE_SECONDS = "vramscribe_release_seconds"
INSTANCES = "vramscribe_instances"
LOADS_AVOIDED = "vramscribe_loads_avoided"

MB = 1024 * 1024
LOAD_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
WAIT_BUCKETS = (0.1, 1, 5, 15, 60, 300, 900, 3600, 14400)
SPEED_BUCKETS = (0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
RELEASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class _Present(Collector):
    def __init__(self, service: SchedulerService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        jobs = GaugeMetricFamily(JOBS, "Jobs by status and model.", labels=["status", "model"])
        for (status, model), n in sorted(self.service.store.counts_by_status_and_model().items()):
            jobs.add_metric([status.value, model], n)
        yield jobs
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Pending jobs by priority.", labels=["priority"])
        by_prio = Counter(job.priority for job in list(self.service.runner.queue))
        for prio, n in sorted(by_prio.items()):
            depth.add_metric([str(prio)], n)
        yield depth
        mem = GaugeMetricFamily(
            DEVICE_MEMORY, "Device memory split.", labels=["device", "kind"], unit=""
        )
        instances = GaugeMetricFamily(
            INSTANCES, "Model instances by device and state.", labels=["device", "state"]
        )
        for dev in self.service.devices():
            split = {"total": dev.total_mb, "others": dev.others_mb, "ours": dev.ours_mb,
                     "reserved": dev.reserved_mb, "free": dev.free_mb}  # fmt: skip
            for kind, mb in split.items():
                mem.add_metric([dev.id, kind], mb * MB)
            states = Counter(i.state for i in dev.instances)
            for state in ("starting", "loading", "processing", "idle", "releasing"):
                instances.add_metric([dev.id, state], states.get(state, 0))
        yield mem
        yield instances
        yield CounterMetricFamily(
            LOADS_AVOIDED,
            "Jobs that ran on an already loaded (warm) instance.",
            value=self.service.runner.loads_avoided,
        )


class Metrics:
    """One registry per service, so several services in one process never collide."""

    def __init__(self, service: SchedulerService) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Present(service))
        r = self.registry
        self.load = Histogram(LOAD_SECONDS, "Model load time.", ["model", "device"],
                              buckets=LOAD_BUCKETS, registry=r)  # fmt: skip
        self.speed = Histogram(SPEED, "Audio seconds per second of transcription.", ["model"],
                               buckets=SPEED_BUCKETS, registry=r)  # fmt: skip
        self.wait = Histogram(WAIT_SECONDS, "Queue wait before a job first starts.", ["model"],
                              buckets=WAIT_BUCKETS, registry=r)  # fmt: skip
        self.ooms = PromCounter(OOMS, "Out-of-memory failures.", ["device"], registry=r)
        self.retries = PromCounter(RETRIES, "Retried attempts.", ["kind"], registry=r)
        self.release = Histogram(RELEASE_SECONDS, "Exit to memory confirmed free.", ["device"],
                                 buckets=RELEASE_BUCKETS, registry=r)  # fmt: skip
        self._waited: set[str] = set()
        self._last_failure: dict[str, str] = {}
        service.runner.listeners.append(self.on_event)

    def on_event(self, event: RunnerEvent) -> None:
        if isinstance(event, InstanceLoaded):
            self.load.labels(event.task.job.model, event.device).observe(event.load_s)
        elif isinstance(event, MemoryReleased):
            self.release.labels(event.device).observe(event.release_s)
        elif isinstance(event, AttemptFailed):
            # The failed attempt's own kind: retried or final is the job's state next.
            self._last_failure[event.task.job.id] = event.kind.value
            if event.kind is FailureKind.OOM:
                self.ooms.labels(event.device).inc()
        elif isinstance(event, JobChanged):
            self._job_changed(event.task)

    def _job_changed(self, task: Task) -> None:
        job = task.job
        state = job.state
        if state is JobState.LOADING and job.id not in self._waited and task.wait_s is not None:
            self._waited.add(job.id)
            self.wait.labels(job.model).observe(task.wait_s)
        elif state is JobState.PENDING and job.id in self._last_failure:
            self.retries.labels(self._last_failure.pop(job.id)).inc()
        elif state is JobState.COMPLETED and task.transcribe_s:
            self.speed.labels(job.model).observe(job.audio_s / task.transcribe_s)
