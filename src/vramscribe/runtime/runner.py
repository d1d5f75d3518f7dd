"""The runtime loop: devices -> planner -> worker processes -> events -> outputs.

The scheduler never blocks on a worker: each worker's stdout is read by a
thread into one queue, and the loop wakes on that queue or every ``poll_s``.
An instance's reservation is dropped only after its process has exited *and*
a device reading no longer shows its memory (the seed's release retry: kill
again and keep waiting if it lingers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState, transition
from vramscribe.core.neighbours import NeighbourTracker
from vramscribe.core.planner import Plan, plan
from vramscribe.core.queue import PendingQueue
from vramscribe.core.retry import FailureKind, decide_retry
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView
from vramscribe.devices.base import Device, Reading
from vramscribe.engines.base import EngineOptions
from vramscribe.outputs import render, write_atomic
from vramscribe.transcript import Transcript

Listener = Callable[[dict[str, Any]], None]
log = logging.getLogger("vramscribe.runtime")
OUTPUT_GRACE_S = 5.0


@dataclass(slots=True, eq=False)
class Task:
    """A job plus what the runtime needs to run it and write its outputs."""

    job: Job
    input: Path
    engine: EngineOptions
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    progress_s: float = 0.0
    pending_reason: str = ""
    device_id: str | None = None
    load_s: float | None = None
    transcribe_s: float | None = None
    wait_s: float | None = None
    worker_pid: int | None = None


@dataclass(slots=True, eq=False)
class Worker:
    task: Task
    device: Device
    proc: subprocess.Popen[str]
    reserved_mb: float
    expected_end: float
    started_at: float
    last_event_at: float
    state: JobState = JobState.LOADING
    loaded_mb: float = 0.0
    loaded_at: float | None = None
    observed_mb: float = 0.0
    stdout_closed: bool = False
    exit_seen_at: float | None = None
    peak_mb: float = 0.0
    result: Path | None = None
    error: tuple[FailureKind, str] | None = None
    exited_at: float | None = None
    last_kill_at: float | None = None
    outcome_done: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass(frozen=True, slots=True)
class MemorySplit:
    total_mb: float
    measured_free_mb: float
    others_mb: float
    ours_mb: float
    reserved_mb: float
    free_mb: float
    workers: list[Worker]


class Runner:
    """Runs tasks to a final state on the given devices."""

    def __init__(
        self,
        devices: list[Device],
        settings: Settings | None = None,
        book: FootprintBook | None = None,
        *,
        run_dir: Path,
        hang_timeout_s: float = 600.0,
        release_timeout_s: float = 10.0,
        settle_s: float = 2.0,
        poll_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.devices = {d.id: d for d in devices}
        self.settings = settings or Settings()
        self.book = book or FootprintBook()
        self.run_dir = run_dir
        self.hang_timeout_s = hang_timeout_s
        self.release_timeout_s = release_timeout_s
        self.settle_s = settle_s
        # Per device: True once a reading attributed memory to one of our workers, False
        # once a loaded worker stayed unattributed past settle_s (containers where NVML
        # reports host pids), None while unknown.
        self.attributed: dict[str, bool | None] = {}
        self.poll_s = poll_s
        self.clock = clock
        self.tasks: dict[str, Task] = {}
        self.queue = PendingQueue(self.settings.aging_s_per_point)
        self.workers: dict[str, Worker] = {}
        self.releasing: list[Worker] = []
        self.listeners: list[Listener] = []
        self.neighbours = NeighbourTracker()
        self.cooldown: dict[str, float] = {}
        self.readings: dict[str, Reading] = {}
        self.unreadable: set[str] = set()
        self.last_plan: Plan | None = None
        self._events: queue.Queue[tuple[str, int, dict[str, Any] | None]] = queue.Queue()
        self._stop = False
        run_dir.mkdir(parents=True, exist_ok=True)

    # -- public API --------------------------------------------------------------
    def add(self, task: Task) -> None:
        self.tasks[task.job.id] = task
        if task.job.state is JobState.PENDING:
            self.queue.push(task.job)
        self._publish("job", task)

    def fail_now(self, task: Task, reason: str) -> None:
        """A job that cannot even be queued (unreadable input): fail it alone."""
        self.tasks[task.job.id] = task
        task.job.error = reason
        transition(task.job, JobState.FAILED, self.clock(), reason)
        self._publish("job", task)

    def cancel(self, job_id: str, reason: str = "cancelled") -> None:
        task = self.tasks.get(job_id)
        if task is None or task.job.state.is_final:
            return
        if task.job.state is JobState.PENDING:
            self.queue.remove(job_id)
            transition(task.job, JobState.CANCELLED, self.clock(), reason)
            self._publish("job", task)
        elif job_id in self.workers:
            worker = self.workers[job_id]
            worker.error = None
            worker.outcome_done = True
            self._kill(worker)
            transition(task.job, JobState.CANCELLED, self.clock(), reason)
            self._publish("job", task)

    def stop(self, reason: str = "interrupted") -> None:
        """Cancel everything: running workers are terminated, nothing is half-written."""
        for job_id, task in list(self.tasks.items()):
            if not task.job.state.is_final:
                self.cancel(job_id, reason)
        deadline = self.clock() + 5.0
        for worker in list(self.workers.values()):
            try:
                worker.proc.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self._stop = True

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the scheduler's thread at its next wake-up (thread-safe)."""
        self._events.put(("", -1, {"call": fn}))

    def run_until(self, stop: threading.Event) -> None:
        """Serve forever: keep scheduling until ``stop`` is set, then shut down."""
        while not stop.is_set():
            self.step()
        self.shutdown()

    def shutdown(self) -> None:
        """End every worker but leave jobs as they are, for the store to recover.

        A service that is stopped (or restarted) must not cancel its clients'
        work: interrupted jobs keep their state, so the next start puts them
        back in the queue like after a crash, and pending jobs simply wait.
        """
        for worker in list(self.workers.values()):
            worker.outcome_done = True
            self._kill(worker)
        for worker in list(self.workers.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=10)
        self._stop = True

    def busy(self) -> bool:
        return bool(self.workers or self.releasing or len(self.queue))

    def run(self) -> list[Task]:
        """Loop until every task is final and every instance's memory is back."""
        while not self._stop and self.busy():
            self.step()
        return list(self.tasks.values())

    # -- one iteration -------------------------------------------------------------
    def step(self) -> None:
        self._drain_events(self.poll_s)
        now = self.clock()
        self._reap(now)
        self._check_hangs(now)
        self._read_devices(now)
        self._confirm_releases(now)
        self._admit(now)
        self._publish("tick", None)

    def _drain_events(self, timeout: float) -> None:
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(*item)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, job_id: str, pid: int, event: dict[str, Any] | None) -> None:
        if pid == -1 and event is not None:
            event["call"]()
            return
        worker = self.workers.get(job_id)
        if worker is None or worker.pid != pid:
            return
        if event is None:
            worker.stdout_closed = True
            return
        now = self.clock()
        worker.last_event_at = now
        kind = event.get("event")
        task = worker.task
        if kind == "loaded":
            worker.loaded_mb = float(event.get("memory_mb", 0.0))
            worker.loaded_at = now
            task.load_s = float(event.get("load_s", 0.0))
            self._publish(
                "loaded",
                task,
                device=worker.device.id,
                load_s=task.load_s,
                memory_mb=worker.loaded_mb,
                reserved_mb=worker.reserved_mb,
            )
            if task.job.state is JobState.LOADING:
                worker.state = JobState.PROCESSING
                transition(
                    task.job, JobState.PROCESSING, now, f"model loaded in {task.load_s:.1f} s"
                )
                self._publish("job", task)
        elif kind == "progress":
            task.progress_s = float(event.get("done_s", 0.0))
            speed = self.book.speed(task.job.footprint_key(worker.device.kind))
            left = max(0.0, task.job.audio_s - task.progress_s)
            worker.expected_end = now + left / speed
            self._publish("progress", task)
        elif kind == "segment":
            self._publish("segment", task, segment=event)
        elif kind == "done":
            worker.result = Path(str(event["result"]))
            task.transcribe_s = float(event.get("transcribe_s", 0.0))
        elif kind == "error":
            try:
                fk = FailureKind(str(event.get("kind")))
            except ValueError:
                fk = FailureKind.CRASH
            worker.error = (fk, str(event.get("message", "")))

    def _reap(self, now: float) -> None:
        for job_id, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            # Its last lines ("done") may still be on their way through the pump thread:
            # judge the outcome only once its output has ended (or, failing that, soon after).
            worker.exit_seen_at = worker.exit_seen_at or now
            if not worker.stdout_closed and now - worker.exit_seen_at < OUTPUT_GRACE_S:
                continue
            worker.exited_at = now
            del self.workers[job_id]
            self.releasing.append(worker)
            if worker.outcome_done:
                continue
            worker.outcome_done = True
            if worker.result is not None and code == 0:
                self._complete(worker, now)
            else:
                kind, message = worker.error or (
                    FailureKind.CRASH,
                    f"worker exited with code {code}" + self._stderr_tail(worker),
                )
                self._failed(worker, now, kind, message)

    def _check_hangs(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if worker.outcome_done or now - worker.last_event_at < self.hang_timeout_s:
                continue
            worker.error = (
                FailureKind.HANG,
                f"no progress for {self.hang_timeout_s:.0f} s; worker killed",
            )
            self._kill(worker)

    def _read_devices(self, now: float) -> None:
        """Fresh readings; a device that fails to answer keeps its last one and admits nothing."""
        self.unreadable = set()
        for dev_id, dev in self.devices.items():
            try:
                self.readings[dev_id] = dev.read(now)
            except Exception as exc:
                self.unreadable.add(dev_id)
                log.warning("cannot read %s: %s", dev_id, exc)

    def _confirm_releases(self, now: float) -> None:
        still: list[Worker] = []
        for worker in self.releasing:
            reading = self.readings.get(worker.device.id)
            assert worker.exited_at is not None
            if self.attributed.get(worker.device.id) is False:
                # No per-process view: wait out the reading lag instead.
                gone = now - worker.exited_at >= self.settle_s
            else:
                gone = reading is None or worker.pid not in reading.processes
            if gone:
                self._publish(
                    "released",
                    worker.task,
                    pid=worker.pid,
                    device=worker.device.id,
                    release_s=now - (worker.exited_at or now),
                )
                untrack = getattr(worker.device, "untrack", None)
                if untrack is not None:
                    untrack(worker.pid)
                continue
            since = now - (worker.last_kill_at or worker.exited_at)
            if since > self.release_timeout_s:
                self._kill(worker)
            still.append(worker)
        self.releasing = still

    def _admit(self, now: float) -> None:
        views: list[InstanceView] = []
        for worker in [*self.workers.values(), *self.releasing]:
            reading = self.readings.get(worker.device.id)
            if reading is None:
                continue
            worker.observed_mb = self._observed(worker, reading, now)
            worker.peak_mb = max(worker.peak_mb, worker.observed_mb)
            views.append(
                InstanceView(
                    worker.task.job.id,
                    worker.device.id,
                    worker.state,
                    worker.reserved_mb,
                    worker.observed_mb,
                    max(now, worker.expected_end) if worker.exited_at is None else now,
                    worker.task.job.priority,
                )
            )
        snaps: list[DeviceSnapshot] = []
        for dev_id, dev in self.devices.items():
            split = self.memory_split(dev_id)
            if split is None or dev_id in self.unreadable:
                continue
            peak = None
            if dev.kind != "cpu":
                # Memory a starting instance may already hold is not a neighbour's: count
                # outstanding reservations as ours, or the peak would remember our own loads.
                others = max(0.0, split.others_mb - split.reserved_mb)
                peak = self.neighbours.observe(dev_id, now, others)
            snaps.append(
                DeviceSnapshot(
                    dev_id,
                    dev.kind,
                    split.total_mb,
                    split.measured_free_mb,
                    max_instances=dev.max_instances,
                    foreign_peak_mb=peak,
                    cooldown_until=self.cooldown.get(dev_id, 0.0),
                )
            )
        if not len(self.queue):
            return
        decisions = plan(now, self.queue, snaps, views, self.settings, self.book)
        self.last_plan = decisions
        for reject in decisions.rejects:
            task = self.tasks[reject.job_id]
            self.queue.remove(reject.job_id)
            task.job.error = reject.reason
            transition(task.job, JobState.FAILED, now, reject.reason)
            self._publish("job", task)
        for start in decisions.starts:
            self._spawn(
                self.tasks[start.job_id],
                start.device_id,
                start.reserved_mb,
                start.expected_end,
                now,
            )
        for job in self.queue:
            task = self.tasks[job.id]
            reason = decisions.reason_for(job.id)
            if reason != task.pending_reason:
                task.pending_reason = reason
                self._publish("reason", task, reason=reason)

    def memory_split(self, dev_id: str) -> MemorySplit | None:
        """The device's memory as the CLI view, the dashboard and the metrics show it.

        "Ours" counts only our workers (NVML lists every process on a GPU);
        "reserved" is what starting instances were granted but do not hold yet.
        """
        reading = self.readings.get(dev_id)
        if reading is None:
            return None
        mine = [w for w in [*self.workers.values(), *self.releasing] if w.device.id == dev_id]
        ours = sum(w.observed_mb for w in mine)
        reserved = sum(max(0.0, w.reserved_mb - w.observed_mb) for w in mine)
        return MemorySplit(
            total_mb=reading.total_mb,
            measured_free_mb=reading.free_mb,
            others_mb=max(0.0, reading.used_mb - ours),
            ours_mb=ours,
            reserved_mb=reserved,
            free_mb=max(0.0, reading.free_mb - reserved),
            workers=mine,
        )

    def _observed(self, worker: Worker, reading: Reading, now: float) -> float:
        """Memory the device attributes to ``worker``, or its reservation where it cannot.

        Where readings never name our processes, an instance's reservation counts
        as observed once it has been loaded for ``settle_s`` (longer than the
        reading lag), so it is neither missed nor counted twice.
        """
        dev_id = worker.device.id
        observed = reading.processes.get(worker.pid, 0.0)
        if observed > 0:
            self.attributed[dev_id] = True
            return observed
        settled = worker.loaded_at is not None and now - worker.loaded_at >= self.settle_s
        if not settled:
            return observed
        if self.attributed.get(dev_id) is None and worker.exited_at is None:
            self.attributed[dev_id] = False
            log.warning("%s does not attribute memory to our processes; using reservations", dev_id)
        return worker.reserved_mb if self.attributed.get(dev_id) is False else observed

    # -- workers -------------------------------------------------------------------
    def _spawn(
        self, task: Task, device_id: str, reserved: float, expected_end: float, now: float
    ) -> None:
        job = task.job
        device = self.devices[device_id]
        self.queue.remove(job.id)
        job.attempts += 1
        if task.wait_s is None:
            task.wait_s = now - job.submitted_at
        options = task.engine
        engine = options.to_dict()
        if device.kind == "cuda":
            engine["device"] = "cuda"
            engine["device_index"] = int(device_id.split(":")[1])
        elif device.kind == "cpu":
            engine["device"] = "cpu"
        result = self.run_dir / "results" / f"{job.id}.{job.attempts}.json"
        spec = {
            "input": str(task.input),
            "result": str(result),
            "attempt": job.attempts,
            "engine": engine,
        }
        log = open(self.run_dir / f"worker-{job.id}.{job.attempts}.log", "w")  # noqa: SIM115
        # NVML numbers GPUs by bus; CUDA fastest-first unless told otherwise.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "vramscribe.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            start_new_session=True,
        )
        log.close()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec))
        proc.stdin.close()
        track = getattr(device, "track", None)
        if track is not None:
            track(proc.pid)
        worker = Worker(task, device, proc, reserved, expected_end, now, now)
        self.workers[job.id] = worker
        task.device_id = device_id
        task.worker_pid = proc.pid
        transition(
            job, JobState.LOADING, now, f"starting on {device_id} (reserved {reserved:.0f} MB)"
        )
        threading.Thread(
            target=self._pump, args=(job.id, proc.pid, proc.stdout), daemon=True
        ).start()
        self._publish("job", task)

    def _pump(self, job_id: str, pid: int, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._events.put((job_id, pid, event))
        self._events.put((job_id, pid, None))

    def _kill(self, worker: Worker) -> None:
        worker.last_kill_at = self.clock()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signal.SIGKILL)

    def _stderr_tail(self, worker: Worker) -> str:
        log = self.run_dir / f"worker-{worker.task.job.id}.{worker.task.job.attempts}.log"
        try:
            lines = log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1]}" if lines else ""

    # -- outcomes ------------------------------------------------------------------
    def _complete(self, worker: Worker, now: float) -> None:
        task = worker.task
        assert worker.result is not None
        try:
            transcript = Transcript.from_dict(json.loads(worker.result.read_text()))
            for fmt, path in task.outputs:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, render(transcript, fmt))
        except (OSError, ValueError, KeyError) as exc:
            self._failed(worker, now, FailureKind.CRASH, f"cannot write outputs: {exc}")
            return
        key = task.job.footprint_key(worker.device.kind)
        peak = max(worker.peak_mb, worker.loaded_mb)
        if peak > 0:
            self.book.observe_peak(key, peak, task.job.audio_s)
        if task.transcribe_s and task.job.audio_s:
            self.book.observe_speed(key, task.job.audio_s / task.transcribe_s)
        task.progress_s = task.job.audio_s
        transition(task.job, JobState.COMPLETED, now, "transcribed")
        self._publish("job", task)

    def _failed(self, worker: Worker, now: float, kind: FailureKind, message: str) -> None:
        task = worker.task
        job = task.job
        self._publish("failure", task, failure=kind.value, message=message, device=worker.device.id)
        if kind is FailureKind.OOM:
            self.cooldown[worker.device.id] = now + self.settings.oom_cooldown_s
        decision = decide_retry(kind, job.attempts, worker.reserved_mb, self.settings, message)
        if decision.retry:
            transition(job, JobState.PENDING, now, decision.reason)
            job.not_before = now + decision.delay_s
            job.estimate_floor_mb = max(job.estimate_floor_mb, decision.estimate_floor_mb)
            self.queue.push(job)
        else:
            job.error = decision.reason
            transition(job, JobState.FAILED, now, decision.reason)
        self._publish("job", task)

    def _publish(self, kind: str, task: Task | None, **extra: Any) -> None:
        event: dict[str, Any] = {"type": kind, **extra}
        if task is not None:
            event["job_id"] = task.job.id
            event["state"] = task.job.state.value
            event["task"] = task
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                # A broken listener (a full disk under the timeline, a store hiccup) must
                # not stop the scheduler, which would strand every running worker.
                log.exception("event listener failed on %s", kind)
