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
from vramscribe.protocol import Failed, Progress, Started
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
    device: FakeDevice
    launched_at: float
    phase: str = "starting"
    job_started_at: float = 0.0
    jobs: int = 0
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
    for step in range(max_steps):
        if until is not None and until():
            return step
        if until is None and not runner.busy():
            return step
        for worker in launcher.workers:
            _play(worker, _state_of(worker, device, clock.now), runner, clock.now, device, script)
        runner.step()
        clock.now += dt
    raise AssertionError(f"the runner was still busy after {max_steps} steps")


# How far each fake worker got, kept across drive() calls (keyed by identity; the worker is
# kept alive with its state so an id is never reused while it is in here).
_PLAYED: dict[int, tuple[FakeWorker, _Played]] = {}


def _state_of(worker: FakeWorker, device: FakeDevice, now: float) -> _Played:
    entry = _PLAYED.get(id(worker))
    if entry is None or entry[0] is not worker:
        entry = _PLAYED[id(worker)] = (worker, _Played(device, now))
    return entry[1]


def _play(
    worker: FakeWorker,
    state: _Played,
    runner: Runner,
    now: float,
    device: FakeDevice,
    script: Script,
) -> None:
    """One look at one fake worker: move it along its script as a real one would."""
    drained = state.phase == "idle" and len(worker.specs) == state.jobs
    if worker.returncode is not None or (drained and worker.stdin_closed):
        if worker.returncode is None:
            worker.exit(0)
        if state.phase != "gone":
            _gone(worker, state, now)
        return
    if state.phase == "idle" and len(worker.specs) > state.jobs:
        state.phase, state.job_started_at, state.reported_s = "processing", now, 0.0
    since = now - state.launched_at
    if state.phase == "starting" and since >= script.start_s:
        worker.say(Started(script.start_s))
        try:
            device.allocate(worker.pid, script.memory_mb, now)
        except DeviceOutOfMemory as exc:
            worker.say(Failed(FailureKind.OOM, str(exc)))
            worker.exit(1)
            state.phase = "gone"
            return
        state.phase = "loading"
    if state.phase == "loading" and since >= script.start_s + script.load_s:
        worker.load(script.memory_mb, script.load_s)
        state.phase, state.job_started_at = "processing", now
    if state.phase == "processing":
        _process(worker, state, runner, now, script)


def _process(
    worker: FakeWorker, state: _Played, runner: Runner, now: float, script: Script
) -> None:
    name = Path(worker.spec.input).name
    key = (name, worker.spec.attempt)
    if key in script.hang:
        return
    audio_s = _audio_of(runner, worker)
    done_s = min(audio_s, (now - state.job_started_at) * script.speed_x)
    if done_s - state.reported_s >= 1.0:
        worker.say(Progress(done_s))
        state.reported_s = done_s
    if done_s < audio_s:
        return
    state.jobs += 1
    failure = script.fail.get(key)
    if failure is None:
        worker.finish(f"transcript of {name}", audio_s, audio_s / script.speed_x, stay=True)
        state.phase = "idle"
        if worker.returncode is not None:  # its input was closed: it exited after the job
            _gone(worker, state, runner.clock())
        return
    worker.say(Failed(failure, f"scripted {failure.value}"))
    if failure is FailureKind.BAD_INPUT:
        state.phase = "idle"
        return
    worker.exit(1)


def _gone(worker: FakeWorker, state: _Played, now: float) -> None:
    """The process has exited: the driver frees its memory, as it would for a real one."""
    state.device.release(worker.pid, now)
    state.phase = "gone"


def _audio_of(runner: Runner, worker: FakeWorker) -> float:
    for task in runner.tasks.values():
        if str(task.input) == worker.spec.input and task.job.attempts == worker.spec.attempt:
            return task.job.audio_s
    raise KeyError(worker.spec.input)
