"""The real runtime with real worker processes, on a shared fake GPU with the fake engine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_wav
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.base import Reading
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.runtime.events import MemoryReleased, RunnerEvent
from vramscribe.runtime.runner import Runner, Task

# Built-in estimate of "small" float16 on a GPU-like device: 1200 MB.
SMALL_MB = 1200.0


def make_runner(
    tmp_path: Path, total_mb: float, lag_s: float = 0.0, **kw: Any
) -> tuple[Runner, SharedFakeDevice]:
    device = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=total_mb, lag_s=lag_s)
    settings = kw.pop("settings", Settings(safety_margin=0.0, backoff_base_s=0.2))
    runner = Runner([device], settings, run_dir=tmp_path / "run", poll_s=0.05, **kw)
    return runner, device


def add_jobs(
    runner: Runner,
    device: SharedFakeDevice,
    tmp_path: Path,
    count: int,
    seconds: float = 4.0,
    **fake: Any,
) -> list[Task]:
    tasks = []
    for n in range(count):
        audio = write_wav(tmp_path / "in" / f"clip{n}.wav", seconds)
        cfg = {"device_path": str(device.path), "memory_mb": SMALL_MB, "speed_x": 8.0,
               "load_s": 0.2, **fake}  # fmt: skip
        engine = EngineOptions(engine="fake", model="small", fake=cfg)
        job = Job(f"{n}", "small", audio_s=seconds, compute_type="float16")
        task = Task(job, audio, engine, [("txt", tmp_path / "out" / f"clip{n}.txt")])
        runner.add(task)
        tasks.append(task)
    return tasks


def test_lag_and_a_growing_neighbour_never_cause_an_oom(tmp_path: Path) -> None:
    """The neighbour grows twice mid-run, each time just before an admission.

    Each step (400 MB) is within the safety margin (10% of 5000 MB), which is
    what covers growth that no reading can show yet: a reading lags 0.5 s, and
    the admission right after the growth is blind to it.
    """
    settings = Settings(safety_margin=0.1, backoff_base_s=0.2)
    runner, device = make_runner(tmp_path, total_mb=5000, lag_s=0.5, settings=settings)
    tasks = add_jobs(runner, device, tmp_path, 8)
    steps = {2: 400.0, 4: 800.0}

    def grow_neighbour(event: RunnerEvent) -> None:
        done = sum(t.job.state is JobState.COMPLETED for t in tasks)
        if done in steps:
            device.set_foreign(steps.pop(done))

    runner.listeners.append(grow_neighbour)
    runner.run()
    assert not steps, "the neighbour did not grow"
    assert all(t.job.state is JobState.COMPLETED for t in tasks), [t.job.error for t in tasks]
    state = device.true_state()
    assert state.foreign_mb == 800.0
    assert state.oom_events == 0 and state.foreign_oom_events == 0
    assert all((tmp_path / "out" / f"clip{n}.txt").read_text() for n in range(8))
    # Three instances (3 x 1200 MB) fit beside the neighbour; lag never let a fourth in.
    assert state.peak_used_mb <= 5000


@pytest.mark.parametrize("failure", ["crash", "oom", "hang"])
def test_a_failure_on_the_first_attempt_is_retried_and_then_succeeds(
    tmp_path: Path, failure: str
) -> None:
    runner, device = make_runner(tmp_path, total_mb=8000, hang_timeout_s=2.0)
    [task] = add_jobs(runner, device, tmp_path, 1, fail=failure, fail_attempts=[1])
    runner.run()
    assert task.job.state is JobState.COMPLETED, task.job.error
    assert task.job.attempts == 2
    reasons = [h.reason for h in task.job.history if h.to_state is JobState.PENDING]
    assert len(reasons) == 1 and failure in reasons[0] and "retry 2/3" in reasons[0]
    if failure == "oom":
        assert task.job.estimate_floor_mb > SMALL_MB


@pytest.mark.parametrize("failure", ["crash", "load_error"])
def test_a_failure_that_persists_ends_in_a_clear_failure(tmp_path: Path, failure: str) -> None:
    runner, device = make_runner(tmp_path, total_mb=8000)
    [task] = add_jobs(runner, device, tmp_path, 1, fail=failure)
    runner.run()
    assert task.job.state is JobState.FAILED
    assert task.job.error is not None and failure in task.job.error
    expected_attempts = 1 if failure == "load_error" else 3
    assert task.job.attempts == expected_attempts
    assert not (tmp_path / "out" / "clip0.txt").exists()


def test_cancelling_a_running_job_frees_its_memory(tmp_path: Path) -> None:
    runner, device = make_runner(tmp_path, total_mb=8000)
    [task] = add_jobs(runner, device, tmp_path, 1, seconds=600.0)
    cancelled = threading.Event()

    def cancel_when_processing(event: RunnerEvent) -> None:
        if task.job.state is JobState.PROCESSING and not cancelled.is_set():
            cancelled.set()
            runner.cancel(task.job.id, "cancelled by test")

    runner.listeners.append(cancel_when_processing)
    runner.run()
    assert task.job.state is JobState.CANCELLED
    assert device.read(1e12).processes == {}
    assert not (tmp_path / "out" / "clip0.txt").exists()


def test_memory_is_released_before_the_reservation_is_dropped(tmp_path: Path) -> None:
    runner, device = make_runner(tmp_path, total_mb=4000, lag_s=0.3)
    tasks = add_jobs(runner, device, tmp_path, 4)
    seen: list[tuple[str, int, dict[int, float]]] = []

    def on_release(event: RunnerEvent) -> None:
        if isinstance(event, MemoryReleased):
            reading = runner.readings[device.id]
            seen.append((event.task.job.id, event.pid, dict(reading.processes)))

    runner.listeners.append(on_release)
    runner.run()
    # Every instance (warm ones served several jobs) was released exactly once.
    assert sorted(p for _, p, _ in seen) == sorted({t.worker_pid for t in tasks})
    assert all(t.job.state is JobState.COMPLETED for t in tasks)
    for _, pid, processes in seen:
        assert pid not in processes


class FlakyReadings:
    """The shared fake GPU, but every third reading fails, as NVML sometimes does."""

    def __init__(self, inner: SharedFakeDevice) -> None:
        self.inner = inner
        self.calls = 0
        self.id, self.kind, self.max_instances = inner.id, inner.kind, inner.max_instances
        self.reading_lag_s = inner.reading_lag_s
        self.track = self.untrack = inner.track

    def read(self, now: float) -> Any:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("NVML: Unknown Error")
        return self.inner.read(now)


def test_failing_readings_and_a_broken_listener_do_not_stop_the_scheduler(
    tmp_path: Path,
) -> None:
    device = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=4000)
    flaky = FlakyReadings(device)
    runner = Runner([flaky], Settings(safety_margin=0.0), run_dir=tmp_path / "run", poll_s=0.05)
    tasks = add_jobs(runner, device, tmp_path, 4)

    def broken(event: RunnerEvent) -> None:
        raise OSError("disk full")

    runner.listeners.insert(0, broken)
    runner.run()
    assert flaky.calls > 3
    assert all(t.job.state is JobState.COMPLETED for t in tasks), [t.job.error for t in tasks]
    assert device.true_state().oom_events == 0


class Unattributed:
    """The shared fake GPU seen from a container: readings name none of our processes."""

    def __init__(self, inner: SharedFakeDevice) -> None:
        self.inner = inner
        self.id, self.kind, self.max_instances = inner.id, inner.kind, inner.max_instances
        self.reading_lag_s = inner.reading_lag_s
        self.track = self.untrack = inner.track

    def read(self, now: float) -> Reading:
        r = self.inner.read(now)
        return Reading(r.time, r.total_mb, r.free_mb, {})


def test_without_per_process_readings_reservations_stand_in_for_observations(
    tmp_path: Path,
) -> None:
    """Not missed: no OOM under lag with real workers (that they are not counted twice
    either is shown on a fake clock in tests/unit/test_runner.py)."""
    device = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=5000, lag_s=0.5)
    runner = Runner(
        [Unattributed(device)],
        Settings(safety_margin=0.0),
        run_dir=tmp_path / "run",
        poll_s=0.05,
        settle_s=1.0,
    )
    tasks = add_jobs(runner, device, tmp_path, 6, seconds=20.0)
    runner.run()
    assert all(t.job.state is JobState.COMPLETED for t in tasks), [t.job.error for t in tasks]
    state = device.true_state()
    assert state.oom_events == 0
    assert runner.attributed[device.id] is False


def test_a_worker_that_exits_before_its_last_line_is_read_is_not_a_crash(tmp_path: Path) -> None:
    """The exit is seen before the "done" line is handled; the outcome waits for the line."""
    runner, device = make_runner(tmp_path, total_mb=16000)
    [task] = add_jobs(runner, device, tmp_path, 1, seconds=0.5, speed_x=100.0, load_s=0.0)
    runner.step()  # admits and starts the worker
    worker = runner.workers[task.job.id]
    worker.handle.close()  # no further job: a warm worker exits once this one is done
    assert worker.handle.wait(60) == 0  # it has printed everything and exited; nothing handled
    runner._reap(runner.clock())
    assert task.job.state is JobState.LOADING and task.job.attempts == 1
    runner.run()
    assert task.job.state is JobState.COMPLETED and task.job.attempts == 1, task.job.error


def test_workers_that_finish_at_once_are_never_mistaken_for_crashes(tmp_path: Path) -> None:
    """A worker exits right after its last line; the outcome waits for that line."""
    runner, device = make_runner(tmp_path, total_mb=16000)
    tasks = add_jobs(runner, device, tmp_path, 24, seconds=0.5, speed_x=100.0, load_s=0.0)
    runner.run()
    assert [t.job.state for t in tasks] == [JobState.COMPLETED] * 24, [t.job.error for t in tasks]
    assert all(t.job.attempts == 1 for t in tasks)


def test_warm_workers_serve_several_jobs_and_give_their_memory_back(tmp_path: Path) -> None:
    """Real worker processes: two instances fit, six jobs; each instance serves several,
    a bad file fails alone on a warm instance, and every byte comes back at the end."""
    runner, device = make_runner(tmp_path, total_mb=2500)
    tasks = add_jobs(runner, device, tmp_path, 6, seconds=2.0)
    (tmp_path / "in" / "clip3.wav").write_bytes(b"not audio at all")
    runner.run()
    states = [t.job.state for t in tasks]
    assert states.count(JobState.COMPLETED) == 5, [t.job.error for t in tasks]
    assert tasks[3].job.state is JobState.FAILED and "bad_input" in (tasks[3].job.error or "")
    pids = {t.worker_pid for t in tasks}
    assert len(pids) == 2, pids
    assert runner.loads_avoided == 4
    assert device.read(1e12).processes == {}
    state = device.true_state()
    assert state.oom_events == 0 and state.peak_used_mb <= 2500


def test_no_reuse_gives_every_file_its_own_worker(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, reuse=False)
    runner, device = make_runner(tmp_path, total_mb=2500, settings=settings)
    tasks = add_jobs(runner, device, tmp_path, 4, seconds=2.0)
    runner.run()
    assert all(t.job.state is JobState.COMPLETED for t in tasks)
    assert len({t.worker_pid for t in tasks}) == 4 and runner.loads_avoided == 0
