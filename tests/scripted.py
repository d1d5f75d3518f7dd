"""Drive a runner on a fake clock, with fake workers that follow a script.

The runner starts workers through :class:`FakeLauncher`; :func:`drive` plays
each fake worker as a real one would behave (start-up, allocate its memory on
an in-memory :class:`FakeDevice`, report ``loaded``, progress, then finish or
fail) at scripted times, stepping the runner between moves. Every decision
the runner makes is then a function of the script alone: no process, no
thread timing, and a whole batch runs in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vramscribe.core.retry import FailureKind
from vramscribe.devices.fake import FakeDevice
from vramscribe.errors import DeviceOutOfMemory
from vramscribe.protocol import Failed, Progress
from vramscribe.runtime.fake_launcher import FakeLauncher, FakeWorker
from vramscribe.runtime.runner import Runner


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Script:
    """How every fake worker behaves; ``fail`` maps (input name, attempt) to a failure."""

    start_s: float = 0.3
    load_s: float = 0.5
    speed_x: float = 6.0
    memory_mb: float = 1200.0
    fail: dict[tuple[str, int], FailureKind] = field(default_factory=dict)
    hang: set[tuple[str, int]] = field(default_factory=set)


@dataclass
class _Played:
    launched_at: float
    phase: str = "starting"
    reported_s: float = 0.0


def drive(
    runner: Runner,
    launcher: FakeLauncher,
    clock: FakeClock,
    device: FakeDevice,
    script: Script,
    *,
    dt: float = 0.05,
    until: Callable[[], bool] | None = None,
    max_steps: int = 100_000,
) -> int:
    """Step the runner until it is idle (or ``until()``); returns the steps taken."""
    played: dict[int, _Played] = {}
    for step in range(max_steps):
        if until is not None and until():
            return step
        if until is None and not runner.busy():
            return step
        for worker in launcher.workers:
            _play(worker, played, runner, clock.now, device, script)
        runner.step()
        clock.now += dt
    raise AssertionError(f"the runner was still busy after {max_steps} steps")


def _play(
    worker: FakeWorker,
    played: dict[int, _Played],
    runner: Runner,
    now: float,
    device: FakeDevice,
    script: Script,
) -> None:
    state = played.setdefault(worker.pid, _Played(now))
    if worker.returncode is not None:
        if state.phase != "gone":
            device.release(worker.pid, now)
            state.phase = "gone"
        return
    name = Path(worker.spec.input).name
    key = (name, worker.spec.attempt)
    audio_s = runner.tasks[_job_of(runner, worker)].job.audio_s
    since = now - state.launched_at
    if state.phase == "starting" and since >= script.start_s:
        try:
            device.allocate(worker.pid, script.memory_mb, now)
        except DeviceOutOfMemory as exc:
            worker.send(Failed(FailureKind.OOM, str(exc)))
            worker.exit(1)
            state.phase = "gone"
            return
        state.phase = "loading"
    if state.phase == "loading" and since >= script.start_s + script.load_s:
        worker.load(script.memory_mb, script.load_s)
        state.phase = "processing"
    if state.phase != "processing" or key in script.hang:
        return
    done_s = min(audio_s, (since - script.start_s - script.load_s) * script.speed_x)
    if done_s - state.reported_s >= 1.0:
        worker.send(Progress(done_s))
        state.reported_s = done_s
    if done_s < audio_s:
        return
    failure = script.fail.get(key)
    if failure is not None:
        worker.send(Failed(failure, f"scripted {failure.value}"))
        worker.exit(1)
    else:
        worker.finish(f"transcript of {name}", audio_s, audio_s / script.speed_x)
    device.release(worker.pid, now)
    state.phase = "gone"


def _job_of(runner: Runner, worker: FakeWorker) -> str:
    for job_id, task in runner.tasks.items():
        if task.worker_pid == worker.pid or (
            str(task.input) == worker.spec.input and task.job.attempts == worker.spec.attempt
        ):
            return job_id
    raise KeyError(worker.spec.input)
