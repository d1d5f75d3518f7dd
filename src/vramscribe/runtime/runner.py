"""The runtime loop: devices -> policy shell -> planner -> workers -> events -> outputs.

The runner is the imperative shell around the pure core: it reads devices,
lets :class:`~vramscribe.core.observe.PolicyShell` turn readings and our
instances into the planner's input, starts the planner's choices through a
:class:`~vramscribe.runtime.launcher.Launcher`, and applies what workers
report. It never blocks on a worker: messages arrive on one queue, and the
loop wakes on that queue or every ``poll_s``.

A worker is one model instance. After a clean job it stays loaded (idle)
and the planner may give it the next job of its engine key; the planner also
says when an idle instance is released. After any failure but bad input the
instance exits. An instance's reservation is dropped only after its process
has exited *and* the shell confirms its memory is back (killing it again if
the memory lingers).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from vramscribe.core.footprints import FootprintBook, resolve_compute_type
from vramscribe.core.jobs import JobState, fail, transition
from vramscribe.core.limits import DeviceLimits
from vramscribe.core.observe import DeviceInfo, MemorySplit, Observation, PolicyShell, Tracked
from vramscribe.core.planner import Plan, Start
from vramscribe.core.queue import PendingQueue
from vramscribe.core.reasons import normalise_reason
from vramscribe.core.retry import Attempt, FailureKind, apply_failure
from vramscribe.core.settings import Settings
from vramscribe.core.wait import MemoryWaits
from vramscribe.devices.base import Device, Reading
from vramscribe.engines.base import engine_key
from vramscribe.protocol import (
    Done,
    Failed,
    Loaded,
    Message,
    Progress,
    SegmentDone,
    Started,
    WorkerSpec,
)
from vramscribe.runtime.events import (
    AttemptFailed,
    InstanceLoaded,
    JobChanged,
    MemoryReleased,
    ProgressMade,
    ReasonChanged,
    RunnerEvent,
    SegmentTranscribed,
    Tick,
    publish,
)
from vramscribe.runtime.fallback import apply_rung, fallback_only, plan_split, with_fallback_device
from vramscribe.runtime.launcher import Launcher, ProcessLauncher, WorkerHandle
from vramscribe.runtime.outcome import kept_message, write_outputs
from vramscribe.runtime.resume import begin_attempt, finish_result, keep, resume_words
from vramscribe.runtime.task import Task

__all__ = ["MemorySplit", "Runner", "Task", "Worker"]

Listener = Callable[[RunnerEvent], None]
log = logging.getLogger("vramscribe.runtime")
OUTPUT_GRACE_S = 5.0
REASON_REFRESH_S = 2.0
"""How often listeners hear new words of a queued job's same kind of wait (``_tells_reason``)."""


@dataclass(slots=True, eq=False)
class Worker:
    """A started worker (one model instance): its current task, its process, and the
    shell's record of its memory. ``task`` is None while it is idle or closing."""

    task: Task | None
    device: Device
    handle: WorkerHandle
    inst: Tracked
    log_path: Path
    last_event_at: float
    stdout_closed: bool = False
    exit_seen_at: float | None = None
    loaded_mb: float = 0.0
    jobs_served: int = 0
    closing: bool = False
    last_task: Task | None = None
    error: tuple[FailureKind, str] | None = None

    @property
    def pid(self) -> int:
        return self.handle.pid

    @property
    def state(self) -> JobState:
        return self.inst.state


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
        launcher: Launcher | None = None,
        cpu_threads: int = 1,
    ) -> None:
        self.settings = settings or Settings()
        devices = with_fallback_device(devices, self.settings, cpu_threads)
        self.devices = {d.id: d for d in devices}
        # The CPU rung's devices in a GPU run: only jobs the ladder sent there use them.
        self.spare = fallback_only(devices) if "cpu" in self.settings.fallback else set()
        self.settings.limits.check(self.devices)  # a limit for a device not in this run
        self.book = book or FootprintBook()
        self.run_dir = run_dir
        self.hang_timeout_s = hang_timeout_s
        self.shell = PolicyShell(settle_s=settle_s, release_timeout_s=release_timeout_s)
        self.poll_s = poll_s
        self.clock = clock
        self.launcher: Launcher = launcher or ProcessLauncher()
        self.tasks: dict[str, Task] = {}
        self.queue = PendingQueue(self.settings.aging_s_per_point)
        self.instances: dict[int, Worker] = {}  # every live worker process, by pid
        self.workers: dict[str, Worker] = {}  # the busy ones, by job id
        self.idle: dict[str, Worker] = {}  # the idle ones, by instance id
        self.releasing: dict[int, Worker] = {}
        self.held: dict[str, list[str]] = {}  # jobs run by other jobs: parent id -> children
        self.listeners: list[Listener] = []
        self.readings: dict[str, Reading] = {}
        self.unreadable: set[str] = set()
        self.last_plan: Plan | None = None
        self.waits = MemoryWaits(self.settings.max_wait_for_memory_s)
        self.loads_avoided = 0
        self._inbox: queue.Queue[tuple[int, Message | None] | Callable[[], None]] = queue.Queue()
        self._stop = False
        self._added = False  # a job arrived since the last plan: plan without waiting
        self.admitting = True
        """False while a service drains: running jobs finish, nothing new starts."""
        self.accepts: Callable[[Task], bool] = lambda task: True
        """Whether a finished job's result may be kept: False once its lease moved on."""
        self.last_seen: Observation | None = None
        """The planner's input at the last step (a Ray node agent sends it to the head)."""
        self.admission: Callable[[], AbstractContextManager[object]] = nullcontext
        """Held around reading the devices and planning (the host-wide ledger's lock)."""
        run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def attributed(self) -> dict[str, bool | None]:
        return self.shell.attributed

    # -- public API --------------------------------------------------------------
    def add(self, task: Task) -> None:
        if not task.job.engine_key:
            task.job.engine_key = engine_key(task.engine)
        self.tasks[task.job.id] = task
        if task.job.state is JobState.PENDING:
            self.queue.push(task.job)
            self._added = True
        self._publish(JobChanged(task))

    def fail_now(self, task: Task, reason: str) -> None:
        """A job that cannot even be queued (unreadable input): fail it alone."""
        self.tasks[task.job.id] = task
        fail(task.job, self.clock(), reason)
        self._publish(JobChanged(task))

    def hold(self, task: Task, reason: str, children: list[str]) -> None:
        """Keep a job that runs through other jobs (a file split by channel): known, never
        queued; :meth:`advance` moves it as they go, cancelling it cancels them."""
        self.tasks[task.job.id] = task
        self.held[task.job.id] = children
        task.pending_reason = reason
        self._publish(JobChanged(task))

    def advance(self, task: Task, state: JobState, reason: str) -> None:
        """Move a held job (failing sets its error); see :meth:`hold`."""
        now = self.clock()
        if state is JobState.FAILED:
            fail(task.job, now, reason)
        else:
            transition(task.job, state, now, reason)
        self._publish(JobChanged(task))

    def cancel(self, job_id: str, reason: str = "cancelled") -> None:
        task = self.tasks.get(job_id)
        if task is None or task.job.state.is_final:
            return
        if job_id in self.held:
            transition(task.job, JobState.CANCELLED, self.clock(), reason)
            self._publish(JobChanged(task))
            for child in self.held[job_id]:
                self.cancel(child, reason)
            return
        if task.job.state is JobState.PENDING:
            if job_id in self.queue:
                self.queue.remove(job_id)
        elif job_id in self.workers:
            worker = self.workers.pop(job_id)
            worker.error = None
            worker.last_task, worker.task = worker.task, None
            self._kill(worker)
        else:
            return
        transition(task.job, JobState.CANCELLED, self.clock(), reason)
        self._publish(JobChanged(task))

    def stop(self, reason: str = "interrupted") -> None:
        """Cancel everything: running workers are terminated, nothing is half-written."""
        for job_id, task in list(self.tasks.items()):
            if not task.job.state.is_final:
                self.cancel(job_id, reason)
        self._end_workers(5.0)

    def shutdown(self) -> None:
        """End every worker but leave jobs as they are, for the store to recover.

        A service that is stopped (or restarted) must not cancel its clients'
        work: interrupted jobs keep their state, so the next start puts them
        back in the queue like after a crash, and pending jobs simply wait.
        """
        self._end_workers(10.0)

    def _end_workers(self, timeout_s: float) -> None:
        for worker in list(self.instances.values()):
            worker.task = None
            self._kill(worker)
        deadline = time.monotonic() + timeout_s
        for worker in list(self.instances.values()):
            if worker.handle.wait(max(0.1, deadline - time.monotonic())) is None:
                worker.handle.kill()
                worker.handle.wait(timeout_s)
        self._stop = True

    def drop(self, job_id: str, reason: str) -> None:
        """Forget a job that is no longer ours (its lease moved on, or it ended elsewhere).

        No state change is made: the job's owner writes those. A worker running
        it is killed; its memory is released like any other.
        """
        task = self.tasks.pop(job_id, None)
        if task is None:
            return
        log.warning("job %s dropped: %s", job_id, reason)
        if job_id in self.queue:
            self.queue.remove(job_id)
        worker = self.workers.pop(job_id, None)
        if worker is not None:
            worker.error = None
            worker.last_task, worker.task = worker.task, None
            self._kill(worker)

    def start_planned(self, task: Task, start: Start) -> bool:
        """Start a job as another process's planner chose (the Ray head); False if the
        idle instance it chose is gone (the job then waits in this runner's queue)."""
        self.add(task)
        if start.instance_id is None:
            self._spawn(task, start, self.clock())
            return True
        worker = self.idle.pop(start.instance_id, None)
        if worker is None:
            return False
        self._assign(task, worker, start, self.clock())
        return True

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the scheduler's thread at its next wake-up (thread-safe)."""
        self._inbox.put(fn)

    def run_until(self, stop: threading.Event) -> None:
        """Serve forever: keep scheduling until ``stop`` is set, then shut down."""
        while not stop.is_set():
            self.step()
        self.shutdown()

    def busy(self) -> bool:
        return bool(self.instances or self.releasing or len(self.queue))

    def run(self) -> list[Task]:
        """Loop until every task is final and every instance's memory is back."""
        while not self._stop and self.busy():
            self.step()
        return list(self.tasks.values())

    def memory_split(self, dev_id: str) -> MemorySplit | None:
        """The device's memory as the CLI view, the dashboard and the metrics show it."""
        reading = self.readings.get(dev_id)
        return None if reading is None else self.shell.split(dev_id, reading)

    def limits_for(self, dev_id: str) -> DeviceLimits:
        """The user's limits on a device, resolved against its last reading."""
        reading = self.readings.get(dev_id)
        return self.settings.limits.for_device(dev_id, reading.total_mb if reading else 0.0)

    def _device_info(self, dev: Device) -> DeviceInfo:
        limits = self.limits_for(dev.id)
        return DeviceInfo(
            dev.id,
            dev.kind,
            dev.max_instances,
            reserve_bytes=limits.reserve_bytes,
            memory_limit_bytes=limits.memory_limit_bytes,
            reading_lag_s=dev.reading_lag_s,
        )

    # -- one iteration -------------------------------------------------------------
    def step(self) -> None:
        # New work is planned at once, not a poll interval later (a batch's first launch).
        self._drain_inbox(0.0 if self._added else self.poll_s)
        self._added = False
        now = self.clock()
        self._reap(now)
        self._check_hangs(now)
        with self.admission():
            self._read_devices(now)
            self._admit(now)
        self._publish(Tick())

    def _drain_inbox(self, timeout: float) -> None:
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if callable(item):
                item()
            else:
                self._handle(*item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, pid: int, message: Message | None) -> None:
        worker = self.instances.get(pid)
        if worker is None:
            return
        if message is None:
            worker.stdout_closed = True
            return
        now = self.clock()
        worker.last_event_at = now
        task = worker.task
        if isinstance(message, Started):
            self.shell.started(worker.inst)
        elif isinstance(message, Loaded):
            self._loaded(worker, message, now)
        elif isinstance(message, Failed):
            self._worker_failed(worker, message, now)
        elif task is None:
            return
        elif isinstance(message, Progress):
            task.progress_s = message.done_s
            speed = self.book.speed(task.job.footprint_key(worker.device.kind))
            left = max(0.0, task.job.audio_s - task.progress_s)
            worker.inst.expected_end = now + left / speed
            self._publish(ProgressMade(task))
        elif isinstance(message, SegmentDone):
            keep(task, message)
            self._publish(SegmentTranscribed(task, message.start, message.end, message.text))
        elif isinstance(message, Done):
            task.transcribe_s = message.transcribe_s
            self._complete(worker, task, Path(message.result), now)
            self._job_over(worker, now)

    def _loaded(self, worker: Worker, message: Loaded, now: float) -> None:
        task = worker.task
        worker.loaded_mb = message.memory_mb
        self.shell.loaded(worker.inst, now)
        if task is None:
            return
        task.load_s = message.load_s
        self._publish(
            InstanceLoaded(
                task, worker.device.id, message.load_s, message.memory_mb, worker.inst.reserved_mb
            )
        )
        if task.job.state is JobState.LOADING:
            transition(task.job, JobState.PROCESSING, now, f"model loaded in {task.load_s:.1f} s")
            self._publish(JobChanged(task))

    def _worker_failed(self, worker: Worker, message: Failed, now: float) -> None:
        """Bad input fails the job and keeps a loaded instance; anything else ends it."""
        worker.error = (message.kind, message.message)
        task = worker.task
        if message.kind is FailureKind.BAD_INPUT and task is not None and worker.inst.loaded_at:
            worker.error = None
            self._failed(worker, task, now, message.kind, message.message)
            self._job_over(worker, now)

    def _job_over(self, worker: Worker, now: float) -> None:
        """The instance's job is done: keep it warm, or let it go."""
        if worker.task is not None:
            self.workers.pop(worker.task.job.id, None)
            worker.last_task, worker.task = worker.task, None
        worker.jobs_served += 1
        if (
            not self.settings.reuse
            or worker.jobs_served >= self.settings.max_jobs_per_instance
            or worker.closing
        ):
            self._close(worker)
            return
        self.shell.idle(worker.inst, now)
        self.idle[worker.inst.instance_id] = worker

    def _close(self, worker: Worker) -> None:
        """No more jobs for this instance: its input ends and it exits."""
        worker.closing = worker.inst.closing = True
        self.idle.pop(worker.inst.instance_id, None)
        worker.handle.close()

    def _reap(self, now: float) -> None:
        for pid, worker in list(self.instances.items()):
            code = worker.handle.poll()
            if code is None:
                continue
            # Its last lines ("done") may still be on their way through the pump thread:
            # judge the outcome only once its output has ended (or, failing that, soon after).
            worker.exit_seen_at = worker.exit_seen_at or now
            if not worker.stdout_closed and now - worker.exit_seen_at < OUTPUT_GRACE_S:
                continue
            self.shell.exited(worker.inst, now)
            del self.instances[pid]
            self.idle.pop(worker.inst.instance_id, None)
            self.releasing[pid] = worker
            task = worker.task
            if task is None:
                continue
            self.workers.pop(task.job.id, None)
            worker.last_task, worker.task = task, None
            kind, message = worker.error or (
                FailureKind.CRASH,
                f"worker exited with code {code}" + self._stderr_tail(worker),
            )
            self._failed(worker, task, now, kind, message)

    def _check_hangs(self, now: float) -> None:
        for worker in list(self.workers.values()):
            if now - worker.last_event_at < self.hang_timeout_s:
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

    def _admit(self, now: float) -> None:
        infos = [self._device_info(d) for d in self.devices.values()]
        seen = self.shell.observe(now, self.readings, infos, self.unreadable)
        self.last_seen = seen
        for dev_id in seen.unattributed:
            log.warning("%s does not attribute memory to our processes; using reservations", dev_id)
        for inst in seen.released:
            self._released(self.releasing.pop(inst.pid), now)
        for inst in seen.rekill:
            self.releasing[inst.pid].handle.kill()
        if (not len(self.queue) and not self.idle) or not self.admitting:
            return
        decisions = plan_split(now, self.queue, seen, self.spare, self.settings, self.book)
        self.last_plan = decisions
        self._apply(decisions, now)

    def _apply(self, decisions: Plan, now: float) -> None:
        for release in decisions.releases:
            worker = self.idle.get(release.instance_id)
            if worker is not None:
                self._close(worker)

        for reject in [*decisions.rejects, *self.waits.update(now, decisions, self.queue)]:
            task = self.tasks[reject.job_id]
            self.queue.remove(reject.job_id)
            fail(task.job, now, reject.reason)
            self._publish(JobChanged(task))
        for start in decisions.starts:
            task = self.tasks[start.job_id]
            if start.instance_id is None:
                self._spawn(task, start, now)
            elif (worker := self.idle.pop(start.instance_id, None)) is not None:
                self._assign(task, worker, start, now)
        for job in self.queue:
            task = self.tasks[job.id]
            task.pending_reason = self.waits.annotate(job.id, decisions.reason_for(job.id), now)
            if self._tells_reason(task, now):
                self._publish(ReasonChanged(task, task.pending_reason))

    def _tells_reason(self, task: Task, now: float) -> bool:
        """Whether listeners hear of ``task``'s new pending reason now.

        A new kind of wait is told at once; new words of the same kind (the job
        it waits behind, the gigabytes it needs) at most every ``REASON_REFRESH_S``.
        Telling every change made a plan cost one event per queued job, because
        the words name the queue's head: a thousand queued jobs meant a thousand
        events per plan for the timeline, the live events and the metrics.
        """
        reason, told = task.pending_reason, task.told_reason
        if reason == told:
            return False
        same_kind = normalise_reason(reason) == normalise_reason(told)
        if same_kind and now - task.told_reason_at < REASON_REFRESH_S:
            return False
        task.told_reason, task.told_reason_at = reason, now
        return True

    def _released(self, worker: Worker, now: float) -> None:
        exited = worker.inst.exited_at if worker.inst.exited_at is not None else now
        task = worker.last_task
        if task is not None:
            self._publish(MemoryReleased(task, worker.pid, worker.device.id, now - exited))
        worker.device.untrack(worker.pid)

    # -- workers -------------------------------------------------------------------
    def _spec(self, task: Task, device: Device, batch: int) -> WorkerSpec:
        job = task.job
        job.attempts += 1
        engine = task.engine.to_dict()
        engine["batch_size"] = batch
        if device.kind == "cuda":
            engine["device"] = "cuda"
            engine["device_index"] = int(device.id.split(":")[1])
        elif device.kind == "cpu":
            engine["device"] = "cpu"
            if engine["engine"] == "fake":  # the fake engine claims no fake GPU memory there
                engine["fake"] = {**engine["fake"], "device_path": None}
        elif device.kind == "fake" and isinstance(path := getattr(device, "path", None), Path):
            # Like CUDA's device index: the fake engine allocates on the device it was placed on.
            engine["fake"] = {**engine.get("fake", {}), "device_path": str(path)}
        compute = resolve_compute_type(str(engine["compute_type"]), device.kind)
        task.ran_with = {"device": device.id, "compute_type": compute, "batch_size": batch}
        resume = begin_attempt(task, engine)
        result = self.run_dir / "results" / f"{job.id}.{job.attempts}.json"
        return WorkerSpec(str(task.input), str(result), job.attempts, engine, resume)

    def _began(self, task: Task, start: Start, now: float) -> str:
        """Bookkeeping common to a new and a warm start; the history's words for the batch."""
        self.queue.remove(task.job.id)
        if task.wait_s is None:
            task.wait_s = now - task.job.submitted_at
        task.device_id = start.device_id
        task.batch_size = start.batch_size
        task.progress_s = 0.0
        auto = task.job.batch_size == 0
        return f", batch size {start.batch_size}{' (auto)' if auto else ''}"

    def _spawn(self, task: Task, start: Start, now: float) -> None:
        job = task.job
        device = self.devices[start.device_id]
        batch = self._began(task, start, now)
        spec = self._spec(task, device, start.batch_size)
        log_path = self.run_dir / f"worker-{job.id}.{job.attempts}.log"
        handle = self.launcher.launch(spec, log_path, self._deliver)
        if not self.settings.reuse:
            handle.close()  # one file per instance: it exits after this job
        device.track(handle.pid)
        inst = Tracked(job.id, start.device_id, handle.pid, start.reserved_mb, start.expected_end)
        inst.priority, inst.key, inst.batch_size = job.priority, job.reuse_key, start.batch_size
        self.shell.start(inst)
        worker = Worker(task, device, handle, inst, log_path, now, closing=not self.settings.reuse)
        self.instances[handle.pid] = self.workers[job.id] = worker
        task.worker_pid = handle.pid
        batch += resume_words(task, spec.resume_from_s)
        reason = f"starting on {start.device_id} (reserved {start.reserved_mb:.0f} MB{batch})"
        transition(job, JobState.LOADING, now, reason)
        self._publish(JobChanged(task))

    def _assign(self, task: Task, worker: Worker, start: Start, now: float) -> None:
        """Give an idle (warm) instance its next job: no start, no load."""
        job = task.job
        batch = self._began(task, start, now)
        spec = self._spec(task, worker.device, start.batch_size)
        self.shell.assign(
            worker.inst,
            job.id,
            start.reserved_mb,
            start.expected_end,
            job.priority,
            now,
            start.batch_size,
        )
        worker.task, worker.last_event_at, worker.error = task, now, None
        self.workers[job.id] = worker
        task.worker_pid = worker.pid
        batch += resume_words(task, spec.resume_from_s)
        reason = (
            f"on warm instance {worker.pid} on {start.device_id} "
            f"(reserved {start.reserved_mb:.0f} MB{batch})"
        )
        if not worker.handle.send(spec):
            # It died while idle (its exit is not reaped yet): the job goes back, unharmed.
            self.workers.pop(job.id, None)
            worker.task = None
            self._kill(worker)
            job.attempts -= 1
            if spec.resume_from_s > 0:
                task.resumed_from_s.pop()
            self.queue.push(job)
            return
        self.loads_avoided += 1
        transition(job, JobState.PROCESSING, now, reason)
        self._publish(JobChanged(task))

    def _deliver(self, pid: int, message: Message | None) -> None:
        self._inbox.put((pid, message))

    def _kill(self, worker: Worker) -> None:
        worker.inst.last_kill_at = self.clock()
        worker.closing = worker.inst.closing = True
        self.idle.pop(worker.inst.instance_id, None)
        worker.handle.kill()

    def _stderr_tail(self, worker: Worker) -> str:
        try:
            lines = worker.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1]}" if lines else ""

    # -- outcomes ------------------------------------------------------------------
    def _complete(self, worker: Worker, task: Task, result: Path, now: float) -> None:
        if not self.accepts(task):
            self.drop(task.job.id, "result discarded: the job's lease is held elsewhere")
            return
        problem = finish_result(result, task)
        if problem is not None:
            self._failed(worker, task, now, FailureKind.CRASH, problem)
            return
        key = task.job.footprint_key(worker.device.kind, task.batch_size)
        if worker.inst.peak_mb > 0:  # 0: no reading taken during this job showed it
            peak = max(worker.inst.peak_mb, worker.loaded_mb)
            self.book.observe_peak(key, peak, task.job.audio_s)
        if task.transcribe_s and task.job.audio_s:
            speed = task.job.audio_s / task.transcribe_s
            self.book.observe_speed(key, speed, alone=not worker.inst.shared)
        problem = write_outputs(result, task.outputs, task.engine.layout)
        if problem is not None:
            # The transcription is fine; only the outputs failed. Keep the transcript
            # instead of redoing the work (which would fail the same way).
            task.kept_result = result
            self._failed(worker, task, now, FailureKind.OUTPUT, kept_message(problem, result))
            return
        task.progress_s = task.job.audio_s
        transition(task.job, JobState.COMPLETED, now, "transcribed")
        self._publish(JobChanged(task))

    def _failed(
        self, worker: Worker, task: Task, now: float, kind: FailureKind, message: str
    ) -> None:
        self._publish(AttemptFailed(task, kind, message, worker.device.id))
        compute = str(task.ran_with.get("compute_type"))
        loaded = worker.inst.loaded_at is not None
        ran = Attempt(task.batch_size, compute, worker.device.kind, loaded)
        outcome = apply_failure(
            task.job, kind, message, worker.inst.reserved_mb, now, self.settings, ran
        )
        if outcome.fallback is not None:
            apply_rung(task, outcome.fallback)
        if outcome.cooldown_until is not None:
            self.shell.cool(worker.device.id, outcome.cooldown_until)
        if outcome.retry:
            self.queue.push(task.job)
        self._publish(JobChanged(task))

    def _publish(self, event: RunnerEvent) -> None:
        publish(self.listeners, event)
