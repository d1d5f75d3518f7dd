"""The runner's decisions on a fake clock, with fake workers (no processes, milliseconds).

Each test scripts what workers say and when, through the same protocol real
workers speak, and checks what the runner decided: admissions, release
confirmation, retries, cancellation and hang detection.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from tests.scripted import FakeClock, Script, drive
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.reasons import normalise_reason
from vramscribe.core.retry import FailureKind
from vramscribe.core.settings import Settings
from vramscribe.devices.fake import FakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.protocol import Loaded
from vramscribe.runtime.events import MemoryReleased, ReasonChanged, RunnerEvent
from vramscribe.runtime.fake_launcher import FakeLauncher
from vramscribe.runtime.runner import OUTPUT_GRACE_S, REASON_REFRESH_S, Runner, Task

# Built-in estimate of "small" float16 on a GPU-like device: 1200 MB.
SMALL_MB = 1200.0


class Rig:
    def __init__(self, tmp_path: Path, total_mb: float, lag_s: float = 0.0, **kw: object) -> None:
        self.tmp = tmp_path
        self.clock = FakeClock()
        self.launcher = FakeLauncher()
        self.device = FakeDevice("fake:0", total_mb, lag_s)
        settings = kw.pop("settings", Settings(safety_margin=0.0, backoff_base_s=1.0))
        assert isinstance(settings, Settings)
        self.runner = Runner(
            [kw.pop("device", self.device)],  # type: ignore[list-item]
            settings,
            run_dir=tmp_path / "run",
            poll_s=0,
            clock=self.clock,
            launcher=self.launcher,
            **kw,  # type: ignore[arg-type]
        )
        self.events: list[RunnerEvent] = []
        self.runner.listeners.append(self.events.append)

    def add(
        self,
        count: int,
        audio_s: float = 6.0,
        priority: int = 50,
        model: str = "small",
        batch: int = 1,
    ) -> list[Task]:
        tasks = []
        for n in range(len(self.runner.tasks), len(self.runner.tasks) + count):
            job = Job(f"{n}", model, audio_s, priority, self.clock.now, "float16", batch_size=batch)
            engine = EngineOptions(engine="fake", model=model)
            out = [("txt", self.tmp / "out" / f"clip{n}.txt")]
            task = Task(job, self.tmp / "in" / f"clip{n}.wav", engine, out)
            self.runner.add(task)
            tasks.append(task)
        return tasks

    def step(self, dt: float = 0.05) -> None:
        self.runner.step()
        self.clock.now += dt

    def drive(self, script: Script | None = None, **kw: object) -> None:
        drive(self.runner, self.launcher, self.clock, self.device, script or Script(), **kw)  # type: ignore[arg-type]


def test_one_call_admits_what_fits_and_tells_the_rest_why(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, max_loads_per_device=3)
    rig = Rig(tmp_path, total_mb=2500, settings=settings)
    tasks = rig.add(3)
    rig.step()
    assert [t.job.state for t in tasks] == [JobState.LOADING, JobState.LOADING, JobState.PENDING]
    assert len(rig.launcher.workers) == 2
    assert tasks[2].pending_reason == "waiting: fake:0 has 0.1 GiB free after reservations"
    rig.drive()
    assert [t.job.state for t in tasks] == [JobState.COMPLETED] * 3
    assert rig.device.oom_events == 0
    assert all((tmp_path / "out" / f"clip{n}.txt").read_text() for n in range(3))
    # The third ran on the first instance that became free, with no new process or load.
    first_done = min(t.job.history[-1].time for t in tasks[:2])
    assert len(rig.launcher.workers) == 2 and rig.runner.loads_avoided == 1
    [warm] = tasks[2].job.history[:1]
    assert warm.to_state is JobState.PROCESSING and warm.time >= first_done
    assert warm.reason.startswith("on warm instance ")
    # Nothing queued could use them any more: both were released at once (a batch).
    assert all(w.returncode == 0 and w.stdin_closed for w in rig.launcher.workers)


def test_a_reservation_stays_until_a_reading_no_longer_shows_the_memory(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, reuse=False)  # one instance per file
    rig = Rig(tmp_path, total_mb=1500, lag_s=1.0, settings=settings)
    first, second = rig.add(2)
    rig.drive(until=lambda: first.job.state is JobState.COMPLETED)
    exited_at = rig.clock.now
    # The worker is gone and its memory freed, but readings lag 1 s behind.
    while rig.clock.now < exited_at + 0.9:
        rig.step()
        assert second.job.state is JobState.PENDING
        assert rig.runner.releasing, "the reservation was dropped before the memory read free"
    rig.drive()
    assert second.job.state is JobState.COMPLETED
    [released, _] = [e for e in rig.events if isinstance(e, MemoryReleased)]
    assert released.release_s == pytest.approx(1.0, abs=0.11)


def test_memory_that_lingers_after_exit_gets_the_process_killed_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=4000, release_timeout_s=2.0)
    [task] = rig.add(1)
    rig.step()
    [worker] = rig.launcher.workers
    rig.device.allocate(worker.pid, SMALL_MB, rig.clock.now)
    worker.load(SMALL_MB)
    rig.step()
    worker.finish("done", 6.0)  # the device still shows its memory: a driver that lags
    for _ in range(int(5.0 / 0.05)):
        rig.step()
    assert task.job.state is JobState.COMPLETED
    assert worker.kills == 2, "killed again after 2 s and again after 4 s"
    assert rig.runner.releasing
    rig.device.release(worker.pid, rig.clock.now)
    rig.step()
    assert not rig.runner.releasing and not rig.runner.busy()


def test_a_crash_is_retried_after_its_backoff_and_a_persistent_one_fails(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=8000)
    flaky, broken = rig.add(2)
    script = Script()
    script.fail[("clip0.wav", 1)] = FailureKind.CRASH
    for attempt in (1, 2, 3):
        script.fail[("clip1.wav", attempt)] = FailureKind.CRASH
    rig.drive(script)
    assert flaky.job.state is JobState.COMPLETED and flaky.job.attempts == 2
    [retry] = [h for h in flaky.job.history if h.to_state is JobState.PENDING]
    assert retry.reason == "crash: scripted crash (retry 2/3)"
    second_start = [h for h in flaky.job.history if h.to_state is JobState.LOADING][1]
    assert second_start.time >= retry.time + 1.0  # backoff_base_s
    assert broken.job.state is JobState.FAILED and broken.job.attempts == 3
    assert broken.job.error == "crash: scripted crash (gave up after 3 attempts)"


def test_an_oom_cools_the_device_down_and_raises_the_estimate(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, backoff_base_s=0.1, oom_cooldown_s=5.0)
    rig = Rig(tmp_path, total_mb=8000, settings=settings)
    [first] = rig.add(1)
    script = Script()
    script.fail[("clip0.wav", 1)] = FailureKind.OOM
    rig.drive(script, until=lambda: first.job.attempts == 1 and first.job.state is JobState.PENDING)
    failed_at = rig.clock.now
    [other] = rig.add(1)
    while rig.clock.now < failed_at + 4.9:
        rig.step()
        assert other.job.state is JobState.PENDING
    assert "cooling down" in other.pending_reason
    rig.drive(script)
    assert first.job.state is other.job.state is JobState.COMPLETED
    assert first.job.estimate_floor_mb == pytest.approx(SMALL_MB * 1.25, rel=0.01)


def test_cancelling_pending_and_running_jobs(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=1500)
    running, waiting = rig.add(2)
    rig.drive(until=lambda: running.job.state is JobState.PROCESSING)
    rig.runner.cancel(waiting.job.id, "not needed")
    rig.runner.cancel(running.job.id, "stop it")
    assert waiting.job.state is running.job.state is JobState.CANCELLED
    [worker] = rig.launcher.workers
    assert worker.kills == 1
    rig.drive()
    assert not rig.runner.busy() and rig.device.used_mb == 0
    assert not (tmp_path / "out" / "clip0.txt").exists()
    assert len(rig.launcher.workers) == 1


def test_a_silent_worker_is_killed_as_hung_and_retried(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=8000, hang_timeout_s=10.0)
    [task] = rig.add(1)
    script = Script()
    script.hang.add(("clip0.wav", 1))
    rig.drive(script)
    assert task.job.state is JobState.COMPLETED and task.job.attempts == 2
    [retry] = [h for h in task.job.history if h.to_state is JobState.PENDING]
    assert retry.reason.startswith("hang: no progress for 10 s; worker killed")
    hung = rig.launcher.workers[0]
    assert hung.kills >= 1
    loaded_at = next(h.time for h in task.job.history if h.to_state is JobState.PROCESSING)
    assert retry.time == pytest.approx(loaded_at + 10.0, abs=0.11)


def test_an_exit_seen_before_the_last_line_is_not_a_crash(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=8000)
    [task] = rig.add(1)
    rig.step()
    [worker] = rig.launcher.workers
    worker.say(Loaded(SMALL_MB, 0.1))
    rig.step()
    worker.returncode = 0  # exited; its "done" line is still on its way
    for _ in range(int(OUTPUT_GRACE_S / 0.05) - 2):
        rig.step()
    assert task.job.state is JobState.PROCESSING
    worker.finish("late", 6.0)
    rig.step()
    assert task.job.state is JobState.COMPLETED and task.job.attempts == 1


class Unattributed(FakeDevice):
    """A fake GPU seen from a container: readings name none of our processes."""

    def read(self, now: float) -> object:  # type: ignore[override]
        r = super().read(now)
        return type(r)(r.time, r.total_mb, r.free_mb, {})


def test_without_per_process_readings_reservations_are_not_counted_twice(
    tmp_path: Path,
) -> None:
    device = Unattributed("fake:0", 5000.0, 0.5)
    rig = Rig(tmp_path, total_mb=5000, device=device, settle_s=1.0)
    rig.device = device
    tasks = rig.add(6, audio_s=60.0)
    peak = 0

    def watch(event: RunnerEvent) -> None:
        nonlocal peak
        peak = max(peak, len(rig.runner.workers))

    rig.runner.listeners.append(watch)
    rig.drive()
    assert all(t.job.state is JobState.COMPLETED for t in tasks)
    assert device.oom_events == 0
    assert rig.runner.attributed["fake:0"] is False
    # 5000 MB holds four 1200 MB instances; counting both the reading and the
    # reservation would allow two.
    assert peak == 4


def test_a_warm_instance_serves_job_after_job_and_a_crash_ends_only_its_own(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, total_mb=1500)  # room for one instance
    tasks = rig.add(4)
    script = Script()
    script.fail[("clip2.wav", 1)] = FailureKind.CRASH
    rig.drive(script)
    assert [t.job.state for t in tasks] == [JobState.COMPLETED] * 4
    assert [t.job.attempts for t in tasks] == [1, 1, 2, 1]
    # One instance for jobs 0 and 1; the crash on job 2 ended it; a new one finished the rest.
    first, second = rig.launcher.workers
    assert [Path(s.input).name for s in first.specs] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    # Job 2 waited out its retry backoff, so job 3 went first.
    assert [Path(s.input).name for s in second.specs] == ["clip3.wav", "clip2.wav"]
    assert rig.runner.loads_avoided == 3  # jobs 1 and 2 on the first, the retry on the second


def test_bad_input_fails_its_job_and_the_instance_stays_warm(tmp_path: Path) -> None:
    rig = Rig(tmp_path, total_mb=1500)
    tasks = rig.add(3)
    script = Script()
    script.fail[("clip1.wav", 1)] = FailureKind.BAD_INPUT
    rig.drive(script)
    assert [t.job.state for t in tasks] == [JobState.COMPLETED, JobState.FAILED, JobState.COMPLETED]
    assert tasks[1].job.error == "bad_input: scripted bad_input (not retried)"
    [only] = rig.launcher.workers
    assert len(only.specs) == 3


def test_an_instance_is_replaced_after_max_jobs_per_instance(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, max_jobs_per_instance=2)
    rig = Rig(tmp_path, total_mb=1500, settings=settings)
    rig.add(5)
    rig.drive()
    assert [len(w.specs) for w in rig.launcher.workers] == [2, 2, 1]


def test_a_service_keeps_an_idle_instance_for_the_keep_alive_then_releases_it(
    tmp_path: Path,
) -> None:
    settings = Settings(safety_margin=0.0, keep_alive_s=60.0)
    rig = Rig(tmp_path, total_mb=4000, settings=settings)
    [first] = rig.add(1)
    rig.drive(until=lambda: first.job.state is JobState.COMPLETED)
    done_at = rig.clock.now
    [worker] = rig.launcher.workers
    rig.drive(until=lambda: rig.clock.now >= done_at + 30.0)
    assert not worker.stdin_closed and rig.runner.idle
    [late] = rig.add(1)  # a job of the same model 30 s later: no new process, no load
    rig.drive(until=lambda: late.job.state is JobState.COMPLETED)
    assert len(rig.launcher.workers) == 1 and late.job.history[0].reason.startswith("on warm")
    released_at = late.job.history[-1].time
    rig.drive(until=lambda: worker.stdin_closed)
    assert rig.clock.now == pytest.approx(released_at + 60.0, abs=0.11)
    rig.drive()
    assert rig.device.used_mb == 0 and not rig.runner.busy()


def test_a_job_that_fits_nowhere_evicts_an_idle_instance(tmp_path: Path) -> None:
    settings = Settings(safety_margin=0.0, keep_alive_s=600.0)
    rig = Rig(tmp_path, total_mb=5000, settings=settings)
    [small] = rig.add(1)
    rig.drive(until=lambda: small.job.state is JobState.COMPLETED)
    job = Job("big", "large-v3", 6.0, 50, rig.clock.now, "float16")
    big = Task(job, tmp_path / "big.wav", EngineOptions(engine="fake", model="large-v3"), [])
    rig.runner.add(big)
    rig.step()
    assert "waiting for idle instances on fake:0" in big.pending_reason
    assert rig.launcher.workers[0].stdin_closed
    rig.drive(Script(memory_mb=4600.0), until=lambda: big.job.state is JobState.COMPLETED)
    assert rig.device.oom_events == 0


def test_a_warm_instance_that_died_while_idle_gives_its_job_back_unharmed(
    tmp_path: Path,
) -> None:
    settings = Settings(safety_margin=0.0, keep_alive_s=600.0)
    rig = Rig(tmp_path, total_mb=4000, settings=settings)
    [first] = rig.add(1)
    rig.drive(until=lambda: first.job.state is JobState.COMPLETED)
    [worker] = rig.launcher.workers
    worker.stdin_closed = True  # gone while idle: its exit is not reaped yet
    [late] = rig.add(1)
    rig.step()
    assert worker.kills == 1 and late.job.attempts == 0
    assert late.job.state is JobState.PENDING and late.job.history == []
    rig.drive()
    assert late.job.state is JobState.COMPLETED and late.job.attempts == 1
    assert len(rig.launcher.workers) == 2


def test_a_queued_job_hears_a_new_kind_of_wait_at_once_and_new_words_at_most_every_refresh(
    tmp_path: Path,
) -> None:
    """The jobs behind a saturated device wait behind its head: each start changes the
    words of every queued job's reason ("job 3 starts there first", then "job 4 ..."),
    but not its kind. Listeners hear a new kind in the plan that gave it, and new
    words of the same kind at most every REASON_REFRESH_S, the last words included."""
    settings = Settings(safety_margin=0.0, max_loads_per_device=8)
    rig = Rig(tmp_path, total_mb=20_000, settings=settings)
    # Batch 16 and batch 1 in turn: a batch-1 file beside a batch-16 one would slow the
    # device, so each waits for the one before it to end, and the head changes each time.
    tasks = [t for _ in range(15) for b in (16, 1) for t in rig.add(1, audio_s=2.0, batch=b)]
    told: list[tuple[float, str, str]] = []
    rig.runner.listeners.append(
        lambda e: (
            isinstance(e, ReasonChanged) and told.append((rig.clock.now, e.task.job.id, e.reason))
        )
    )
    words: dict[str, set[str]] = {t.job.id: set() for t in tasks}

    def check() -> bool:
        for t in tasks:
            if t.job.state is JobState.PENDING and t.pending_reason:
                words[t.job.id].add(t.pending_reason)
                assert normalise_reason(t.told_reason) == normalise_reason(t.pending_reason)
                if rig.clock.now - t.told_reason_at >= REASON_REFRESH_S + 0.05:
                    assert t.told_reason == t.pending_reason
        return not rig.runner.busy()

    rig.drive(until=check)
    assert all(t.job.state is JobState.COMPLETED for t in tasks)
    last = max(words, key=lambda job_id: len(words[job_id]))  # the one whose words changed most
    assert sum("is saturated: job" in w for w in words[last]) > 1, words[last]
    mine = [(t, reason) for t, job, reason in told if job == last]
    assert len(mine) < len(words[last])  # some words were never told: they went stale first
    for (t0, r0), (t1, r1) in pairwise(mine):
        assert normalise_reason(r0) != normalise_reason(r1) or t1 - t0 >= REASON_REFRESH_S
