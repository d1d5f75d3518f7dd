"""Running a CLI batch to its end: the live view, Ctrl-C, and the summary."""

from __future__ import annotations

import signal
import threading
from typing import Any

from rich.console import Console
from rich.table import Table

from vramscribe.console import error, say
from vramscribe.core.jobs import JobState
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task
from vramscribe.submit.run import Run
from vramscribe.view import LiveView, PlainLog, fmt_duration


def run_batch(run: Run, console: Console) -> bool:
    """Run every job, shown live on a terminal (else logged); False if Ctrl-C stopped it.

    An interrupted batch's workers are stopped and its jobs cancelled. The run
    is closed either way (timeline flushed, footprints kept, store released).
    """
    runner = run.runner
    try:
        if console.is_terminal:
            with LiveView(runner, console) as view:
                runner.listeners.append(view)
                finished = step_until_done(runner)
        else:
            runner.listeners.append(PlainLog(runner))
            finished = step_until_done(runner)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the batch started
        finished = False
    try:
        if not finished:
            say("interrupted: stopping workers", console, style="yellow")
            runner.stop()
    finally:
        run.close()
    return finished


def step_until_done(runner: Runner) -> bool:
    """Run every task to its end; False if Ctrl-C stopped the batch first.

    Ctrl-C only raises a flag that the loop reads between steps, so it never
    lands halfway through a store write or a worker's start (either would
    leave the stop that follows stuck or failing). A second Ctrl-C interrupts
    at once.
    """
    if threading.current_thread() is not threading.main_thread():
        runner.run()
        return True
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while runner.busy() and not stop.is_set():
            runner.step()
    finally:
        signal.signal(signal.SIGINT, previous)
    return not stop.is_set()


def print_summary(console: Console, tasks: list[Task], runner: Runner, started: float) -> None:
    wall = runner.clock() - started
    done = [t for t in tasks if t.job.state is JobState.COMPLETED]
    failed = [t for t in tasks if t.job.state is not JobState.COMPLETED]
    audio = sum(t.job.audio_s for t in done)
    table = Table(title="vramscribe summary")
    table.add_column("files")
    table.add_column("audio")
    table.add_column("wall time")
    table.add_column("speed")
    table.add_column("failed")
    speed = audio / wall if wall > 0 else 0.0
    table.add_row(
        f"{len(done)}/{len(tasks)}",
        fmt_duration(audio),
        fmt_duration(wall),
        f"{speed:.1f}x",
        str(len(failed)),
    )
    console.print(table)
    for t in failed:
        reason = (t.job.error or t.job.state.value).removeprefix(f"{t.input}: ")
        error(f"{t.input}: {reason}", console, label="failed")
    say(f"run folder: {runner.run_dir}", console)
