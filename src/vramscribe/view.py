"""What a person sees while a batch runs: a live view on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from vramscribe.core.jobs import JobState
from vramscribe.runtime.events import JobChanged, RunnerEvent, Tick
from vramscribe.runtime.runner import Runner

GIB = 1024.0


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Totals shared by both views."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.started = time.monotonic()

    def totals(self) -> tuple[int, int, float, float]:
        tasks = list(self.runner.tasks.values())
        done = sum(1 for t in tasks if t.job.state.is_final)
        audio_total = sum(t.job.audio_s for t in tasks)
        audio_done = sum(
            t.job.audio_s if t.job.state is JobState.COMPLETED else t.progress_s for t in tasks
        )
        return done, len(tasks), audio_done, audio_total

    def line(self) -> str:
        done, total, audio_done, audio_total = self.totals()
        wall = time.monotonic() - self.started
        speed = audio_done / wall if wall > 0 else 0.0
        eta = (audio_total - audio_done) / speed if speed > 0 else 0.0
        return (
            f"{done}/{total} files, {audio_done / 3600:.2f}/{audio_total / 3600:.2f} h audio, "
            f"{speed:.1f}x real time, ETA {fmt_duration(eta) if speed else '?'}"
        )


class PlainLog:
    """One line per state change, for logs and pipes."""

    def __init__(self, runner: Runner, stream: Any = None) -> None:
        self.progress = Progress(runner)
        self.stream = stream or sys.stderr

    def __call__(self, event: RunnerEvent) -> None:
        if not isinstance(event, JobChanged):
            return
        task = event.task
        last = task.job.history[-1].reason if task.job.history else ""
        print(
            f"[{fmt_duration(time.monotonic() - self.progress.started)}] {task.input.name}: "
            f"{task.job.state.value} ({last}) | {self.progress.line()}",
            file=self.stream,
            flush=True,
        )


class LiveView:
    """Device memory bars, active jobs, overall progress and pending reasons."""

    def __init__(self, runner: Runner, console: Console) -> None:
        self.runner = runner
        self.progress = Progress(runner)
        self.live = Live(console=console, refresh_per_second=4, transient=False)
        self._last = 0.0

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self.render())
        self.live.__exit__(None, None, None)

    def __call__(self, event: RunnerEvent) -> None:
        now = time.monotonic()
        if isinstance(event, Tick) and now - self._last < 0.25:
            return
        self._last = now
        self.live.update(self.render())

    def render(self) -> Group:
        r = self.runner
        devices = Table.grid(padding=(0, 1))
        for dev_id in list(r.readings):
            split = r.memory_split(dev_id)
            if split is None:
                continue
            ours, reserved, others, free = (
                split.ours_mb,
                split.reserved_mb,
                split.others_mb,
                split.free_mb,
            )
            used = split.total_mb - free
            bar = ProgressBar(total=split.total_mb, completed=used, width=30)
            devices.add_row(
                Text(dev_id, style="bold"),
                bar,
                Text(
                    f"{split.total_mb / GIB:.1f} GiB: others {others / GIB:.1f}, "
                    f"ours {ours / GIB:.1f}, reserved {reserved / GIB:.1f}, free {free / GIB:.1f}"
                    + limits_note(r, dev_id)
                ),
            )
        jobs = Table("file", "state", "device", "progress", box=None, pad_edge=False)
        for w in r.workers.values():
            t = w.task
            if t is None:
                continue
            pct = 100 * t.progress_s / t.job.audio_s if t.job.audio_s else 0.0
            jobs.add_row(Text(t.input.name), t.job.state.value, Text(w.device.id), f"{pct:5.1f}%")
        idle = len(r.idle)
        warm = Text(f"warm instances idle: {idle}; loads avoided: {r.loads_avoided}", style="dim")
        waiting = [r.tasks[j.id] for j in r.queue][:5]
        lines = [Text(f"waiting {t.input.name}: {t.pending_reason}", style="dim") for t in waiting]
        done, total, _, _ = self.progress.totals()
        overall = ProgressBar(total=max(total, 1), completed=done, width=40)
        return Group(devices, jobs, warm, overall, Text(self.progress.line()), *lines)


def limits_note(runner: Runner, dev_id: str) -> str:
    """The user's limits on a device, for its line in the live view."""
    words = runner.limits_for(dev_id).describe()
    return f" ({words})" if words else ""
