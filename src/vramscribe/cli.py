"""The ``vramscribe`` command: transcribe, devices, simulate."""

from __future__ import annotations

import json
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from vramscribe.console import cell, error, literal, say, stderr_console
from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState, parse_priority
from vramscribe.core.settings import Settings
from vramscribe.devices.select import pick_devices
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import BadInput, VramscribeError
from vramscribe.outputs import FORMATS, missing_outputs, output_path
from vramscribe.paths import data_dir, new_run_dir
from vramscribe.view import LiveView, PlainLog, fmt_duration

F = TypeVar("F", bound=Callable[..., Any])


def open_batch_store() -> tuple[Any, bool]:
    """The CLI's own job store (not the service's), and whether this run is the only one.

    Only a run that holds the batch lock may recover jobs: another run's
    in-flight jobs look exactly like a killed run's.
    """
    import fcntl

    from vramscribe.store.store import Store

    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / "batch.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        sole = True
        _HELD.append(lock)
    except BlockingIOError:
        lock.close()
        sole = False
    return Store(f"sqlite:///{folder / 'batch.db'}"), sole


_HELD: list[Any] = []


def load_book(path: Path) -> FootprintBook:
    try:
        return FootprintBook.from_json(path.read_text())
    except (OSError, ValueError, KeyError):
        return FootprintBook()


def parse_batch_size(ctx: click.Context, param: click.Parameter, value: object) -> int:
    """``auto`` (0 inside: the planner chooses) or a batch size of 1-64."""
    text = str(value).strip().lower()
    if text == "auto":
        return 0
    if text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    raise click.BadParameter(f"batch size must be auto or 1-64, got {value!r}")


def instance_options(keep_alive_s: float) -> Callable[[F], F]:
    """Options of warm instances, shared by ``transcribe`` and ``serve``."""

    def add(fn: F) -> F:
        fn = click.option(
            "--max-jobs-per-instance",
            default=200,
            show_default=True,
            type=click.IntRange(1),
            help="Jobs one instance serves before it is replaced (bounds leaks and caches).",
        )(fn)
        fn = click.option(
            "--keep-alive",
            default=keep_alive_s,
            show_default=True,
            type=click.FloatRange(0),
            help="Seconds an idle instance waits for work of its model before it is released.",
        )(fn)
        return click.option(
            "--reuse/--no-reuse",
            default=True,
            show_default=True,
            help="Keep a loaded instance for the next file of the same model "
            "(--no-reuse: one instance per file).",
        )(fn)

    return add


def instance_settings(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "reuse": opts["reuse"],
        "keep_alive_s": opts["keep_alive"],
        "max_jobs_per_instance": opts["max_jobs_per_instance"],
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vramscribe")
def main() -> None:
    """Transcribe many audio files at once with Whisper, without running out of GPU memory."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", default="tiny.en", show_default=True, help="Model name or folder.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda, or cuda:0,cuda:1 (auto: all GPUs NVML finds, else the CPU).",
)
@click.option(
    "--compute-type",
    default="default",
    show_default=True,
    type=click.Choice(["default", "auto", "int8", "int8_float16", "float16", "float32"]),
    help="Weights precision (default: float16 on a GPU, int8 on the CPU).",
)
@click.option(
    "--batch-size",
    default="auto",
    show_default=True,
    callback=parse_batch_size,
    help="auto, or 1-64. Above 1, the batched pipeline: faster per file, ~1.5 GB more per "
    "instance at 8. auto picks per file from free memory (1 on the CPU until measured faster).",
)
@instance_options(keep_alive_s=0.0)
@click.option("--language", default=None, help="Language code; detected when omitted.")
@click.option("--beam-size", default=5, show_default=True, type=click.IntRange(1, 20),
              help="Beam search width.")  # fmt: skip
@click.option("--vad/--no-vad", default=False, help="Skip silence with the VAD filter.")
@click.option("--word-timestamps", is_flag=True, help="Include word timings in json output.")
@click.option("--initial-prompt", default=None, help="Text that sets style and vocabulary.")
@click.option("--hotwords", default=None, help="Words to bias towards, e.g. product names.")
@click.option(
    "--priority", default="normal", show_default=True, help="low, normal, high, urgent or 0-100."
)
@click.option("--out-dir", type=click.Path(path_type=Path), help="Write outputs here.")
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(FORMATS),
    help="Output formats (repeatable; default: txt and srt).",
)
@click.option(
    "--max-instances",
    type=click.IntRange(1, 256),
    help="Most model instances at once, all devices.",
)
@click.option(
    "--safety-margin",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0, 0.9),
    help="Fraction of each device's memory never handed out.",
)
@click.option(
    "--cpu-threads",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads per instance on the CPU (instances = cores / threads).",
)
@click.option("--overwrite", is_flag=True, help="Redo files whose outputs already exist.")
@click.option("--hang-timeout", default=600.0, show_default=True, help="Seconds without progress.")
@click.option("--engine", default="faster-whisper", hidden=True)
@click.option("--fake-config", default="{}", hidden=True)
def transcribe(paths: tuple[str, ...], **opts: Any) -> None:
    """Transcribe audio files and folders (searched recursively).

    Outputs go next to each input (or under --out-dir, mirroring the input
    tree); files whose outputs exist are skipped, so rerunning resumes a batch.
    Exit code 0 only if every file succeeded.
    """
    console = stderr_console()
    try:
        code = _transcribe(paths, opts, console)
    except VramscribeError as exc:
        error(str(exc), console)
        code = 2
    sys.exit(code)


def _transcribe(paths: tuple[str, ...], opts: dict[str, Any], console: Console) -> int:
    from vramscribe.audio import discover, probe_duration
    from vramscribe.models import resolve_model
    from vramscribe.runtime.persist import (
        StorePersister,
        end_orphan,
        record_for,
        task_from_record,
    )
    from vramscribe.runtime.runner import Runner, Task
    from vramscribe.runtime.timeline import Timeline

    found = discover(paths)
    for err in found.errors:
        error(err, console)
    if not found.files:
        error("nothing to transcribe", console)
        return 2
    try:
        priority = parse_priority(opts["priority"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--priority") from None
    engine_name = opts["engine"]
    if engine_name == "fake":
        model_path, profile = opts["model"], opts["model"]
    else:
        resolved = resolve_model(opts["model"])
        model_path, profile = resolved.path, resolved.profile_name or opts["model"]
    devices = pick_devices(opts["device"], opts["cpu_threads"])
    settings = Settings(
        safety_margin=opts["safety_margin"],
        max_instances_total=opts["max_instances"] or Settings().max_instances_total,
        **instance_settings(opts),
    )
    book_path = data_dir() / "footprints.json"
    book = load_book(book_path)
    run_dir = new_run_dir()
    runner = Runner(devices, settings, book, run_dir=run_dir, hang_timeout_s=opts["hang_timeout"])
    started = runner.clock()
    formats = list(opts["formats"] or ("txt", "srt"))
    engine = EngineOptions(
        engine=engine_name,
        model=opts["model"],
        model_path=model_path,
        compute_type=opts["compute_type"],
        batch_size=opts["batch_size"],
        cpu_threads=opts["cpu_threads"],
        language=opts["language"],
        beam_size=opts["beam_size"],
        vad_filter=opts["vad"],
        word_timestamps=opts["word_timestamps"],
        initial_prompt=opts["initial_prompt"],
        hotwords=opts["hotwords"],
        fake=json.loads(opts["fake_config"]),
    )
    timeline = Timeline(runner, run_dir / "timeline.jsonl")
    runner.listeners.append(timeline)
    store, sole = open_batch_store()
    persister = StorePersister(store)
    runner.listeners.append(persister)
    if sole:
        _, pids = store.recover(runner.clock())
        for pid in pids:
            end_orphan(pid)
    unfinished = {
        (rec.input_path, rec.model, tuple(sorted(rec.outputs))): rec
        for rec in (store.pending() if sole else [])
    }
    skipped = resumed = 0
    for file, root in found.files:
        if not opts["overwrite"] and not missing_outputs(file, root, formats, opts["out_dir"]):
            skipped += 1
            continue
        outputs = [(f, output_path(file, root, f, opts["out_dir"])) for f in formats]
        key = (str(file), opts["model"], tuple(sorted((f, str(p)) for f, p in outputs)))
        previous = unfinished.pop(key, None)
        if previous is not None:
            task = task_from_record(previous)
            task.engine = engine
            persister.known(previous.id, len(previous.history))
            runner.add(task)
            resumed += 1
            continue
        job = Job(
            uuid.uuid4().hex[:12],
            profile,
            priority=priority,
            submitted_at=started,  # one submission: longest file first among equals
            compute_type=opts["compute_type"],
            batch_size=opts["batch_size"],
        )
        task = Task(job, file, engine, outputs)
        try:
            job.audio_s = probe_duration(file)
        except BadInput as exc:
            store.add(record_for(task, runner.clock(), opts["model"], root))
            runner.fail_now(task, str(exc))
            continue
        store.add(record_for(task, runner.clock(), opts["model"], root))
        runner.add(task)
    if resumed:
        say(f"resuming {resumed} job(s) an interrupted run left unfinished", console)
    if skipped:
        say(f"skipping {skipped} file(s) whose outputs exist (use --overwrite to redo)", console)
    try:
        if console.is_terminal:
            with LiveView(runner, console) as view:
                runner.listeners.append(view)
                finished = run_batch(runner)
        else:
            runner.listeners.append(PlainLog(runner))
            finished = run_batch(runner)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the batch started
        finished = False
    try:
        if not finished:
            say("interrupted: stopping workers", console, style="yellow")
            runner.stop()
            return 130
    finally:
        timeline.close()
        store.close()
        book_path.parent.mkdir(parents=True, exist_ok=True)
        book_path.write_text(book.to_json())
    tasks = list(runner.tasks.values())
    print_summary(console, tasks, runner, started)
    ok = all(t.job.state is JobState.COMPLETED for t in tasks) and not found.errors
    return 0 if ok else 1


def run_batch(runner: Any) -> bool:
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


def print_summary(console: Console, tasks: list[Any], runner: Any, started: float) -> None:
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


@main.command()
@click.option("--device", default="auto", show_default=True)
def devices(device: str) -> None:
    """Show the devices vramscribe sees, their memory, and which processes use it."""
    console = Console()
    try:
        found = pick_devices(device, 1)
    except VramscribeError as exc:
        error(str(exc), console)
        sys.exit(2)
    table = Table("device", "kind", "total", "free", "processes")
    for dev in found:
        r = dev.read(0.0)
        procs = ", ".join(f"{pid}: {mb:.0f} MB" for pid, mb in sorted(r.processes.items()))
        table.add_row(
            cell(dev.id),
            cell(dev.kind),
            f"{r.total_mb / 1024:.1f} GiB",
            f"{r.free_mb / 1024:.1f} GiB",
            cell(procs),
        )
    console.print(table)


@main.command()
@click.argument("source")
@click.option("--gpus", default="1x24g", show_default=True, help="e.g. 2x24g, 8x80g, 1x16g")
@click.option("--model", default="large-v3", show_default=True)
def simulate(source: str, gpus: str, model: str) -> None:
    """Plan capacity: how long a folder of audio (or a scenario file) would take."""
    from vramscribe.sim.capacity import simulate_command

    sys.exit(simulate_command(source, gpus, model, Console()))


@main.command()
@click.argument("run", required=False)
@click.option(
    "--html", type=click.Path(dir_okay=False, path_type=Path), help="Write one HTML page."
)
@click.option("--png", type=click.Path(file_okay=False, path_type=Path), help="Write charts here.")
@click.option(
    "--chrome-trace",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a trace for Perfetto or chrome://tracing.",
)
def report(run: str | None, html: Path | None, png: Path | None, chrome_trace: Path | None) -> None:
    """Where time and memory went in a run (default: the latest), with findings.

    RUN is a run folder, its timeline file, or a run's name under the data folder.
    """
    from vramscribe.report import report_command

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    sys.exit(report_command(run, html, png, chrome_trace, console))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Default: ~/.local/share/vramscribe"
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", envvar="VRAMSCRIBE_TOKEN", help="Bearer token (or $VRAMSCRIBE_TOKEN).")
@click.option(
    "--allowed-root",
    "allowed_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder whose files clients may name by path (repeatable).",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--model", default="tiny.en", show_default=True, help="Default model.")
@click.option("--store", "store_url", help="Database URL (default: SQLite in the data folder).")
@click.option("--max-upload-mib", default=2048, show_default=True, type=click.IntRange(1))
@click.option("--max-instances", type=click.IntRange(1, 256))
@click.option("--safety-margin", default=0.10, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--cpu-threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--hang-timeout", default=600.0, show_default=True)
@instance_options(keep_alive_s=60.0)
@click.option("--engine", default="faster-whisper", hidden=True)
@click.option("--fake-config", default="{}", hidden=True)
def serve(**opts: Any) -> None:
    """Run the service: HTTP API, live events, durable job store."""
    import uvicorn

    from vramscribe.service.app import create_app
    from vramscribe.service.config import ServiceConfig

    console = stderr_console()
    if opts["host"] not in LOOPBACK and not opts["token"]:
        error(
            f"refusing to listen on {opts['host']} without --token "
            "(anyone on the network could use it)",
            console,
        )
        sys.exit(2)
    defaults = Settings()
    config = ServiceConfig(
        data_dir=opts["data_dir"] or data_dir(),
        store_url=opts["store_url"],
        token=opts["token"],
        allowed_roots=tuple(p.resolve() for p in opts["allowed_roots"]),
        device=opts["device"],
        model=opts["model"],
        settings=Settings(
            safety_margin=opts["safety_margin"],
            max_instances_total=opts["max_instances"] or defaults.max_instances_total,
            **instance_settings(opts),
        ),
        max_upload_bytes=opts["max_upload_mib"] * 1024 * 1024,
        cpu_threads=opts["cpu_threads"],
        hang_timeout_s=opts["hang_timeout"],
        engine=opts["engine"],
        fake_config=json.loads(opts["fake_config"]),
    )
    try:
        app = create_app(config)
    except VramscribeError as exc:
        error(str(exc), console)
        sys.exit(2)
    uvicorn.run(app, host=opts["host"], port=opts["port"], log_level="warning")


def _client(server: str, token: str | None) -> Any:
    from vramscribe.client import Client

    return Client(server, token)


server_option = click.option(
    "--server", envvar="VRAMSCRIBE_SERVER", default="http://127.0.0.1:8000", show_default=True
)
token_option = click.option("--token", envvar="VRAMSCRIBE_TOKEN", help="Or $VRAMSCRIBE_TOKEN.")


def _run_client(fn: Any) -> None:
    import httpx

    try:
        code = fn()
    except (VramscribeError, httpx.HTTPError) as exc:
        error(str(exc))
        code = 2
    sys.exit(code or 0)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@server_option
@token_option
@click.option("--model", "-m")
@click.option("--priority", default="normal", show_default=True)
@click.option("--language")
def submit(files: tuple[str, ...], server: str, token: str | None, **opts: Any) -> None:
    """Upload files to a running service; prints one job id per file."""

    def go() -> int:
        client = _client(server, token)
        for f in files:
            job = client.submit(Path(f), **opts)
            click.echo(f"{job['id']}\t{f}")
        return 0

    _run_client(go)


@main.command()
@server_option
@token_option
@click.option("--status", type=click.Choice([s.value for s in JobState]))
@click.option("--limit", default=50, show_default=True)
def jobs(server: str, token: str | None, status: str | None, limit: int) -> None:
    """List the service's jobs, newest first."""

    def go() -> int:
        data = _client(server, token).jobs(status, limit)
        table = Table("id", "status", "model", "priority", "progress", "input", "reason / error")
        table.columns[0].no_wrap = True
        for j in data["jobs"]:
            table.add_row(
                cell(j["id"]), cell(j["status"]), cell(j["model"]), str(j["priority"]),
                f"{100 * j['progress']:.0f}%", cell(j["input"]),
                cell(j["error"] or j["pending_reason"] or ""),
            )  # fmt: skip
        Console(width=None if sys.stdout.isatty() else 200).print(table)
        click.echo(f"{len(data['jobs'])} of {data['total']} job(s)")
        return 0

    _run_client(go)


@main.command()
@click.argument("job_id")
@server_option
@token_option
def job(job_id: str, server: str, token: str | None) -> None:
    """Show one job: status, progress, reason, state history."""

    def go() -> int:
        click.echo(json.dumps(_client(server, token).job(job_id), indent=2))
        return 0

    _run_client(go)


@main.command()
@click.argument("job_id")
@server_option
@token_option
def wait(job_id: str, server: str, token: str | None) -> None:
    """Follow a job live until it ends; exit 0 if it completed."""
    from rich.progress import Progress

    def go() -> int:
        client = _client(server, token)
        state = "pending"
        with Progress(console=Console(stderr=True)) as progress:
            bar = progress.add_task(literal(job_id), total=1.0)
            for event in client.events(job_id):
                state = event.get("state", state)
                audio = event.get("audio_s") or (event.get("job") or {}).get("audio_s") or 0
                done = event.get("progress_s", 0) or 0
                progress.update(
                    bar,
                    completed=min(1.0, done / audio) if audio else 0,
                    description=literal(str(state)),
                )
        final = client.job(job_id)
        click.echo(
            f"{job_id}: {final['status']}" + (f" ({final['error']})" if final["error"] else "")
        )
        return 0 if final["status"] == "completed" else 1

    _run_client(go)


@main.command()
@click.argument("job_id")
@server_option
@token_option
def cancel(job_id: str, server: str, token: str | None) -> None:
    """Cancel a job; a running worker is stopped and its memory released."""

    def go() -> int:
        data = _client(server, token).cancel(job_id)
        click.echo(f"{job_id}: {data['status']}")
        return 0

    _run_client(go)


if __name__ == "__main__":
    main()
