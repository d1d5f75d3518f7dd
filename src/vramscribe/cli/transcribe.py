"""``vramscribe transcribe``: a batch of files, run here, kept in the CLI's own store."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from vramscribe.cli.batch import print_summary, run_batch
from vramscribe.cli.cluster import ray_options, run_batch_on_ray
from vramscribe.cli.existing import Sorted, sort_inputs
from vramscribe.cli.options import (
    DEFAULT_PRIORITY_NAME,
    fake_config,
    job_default,
    parse_batch_size,
    run_options,
    run_settings,
)
from vramscribe.cli.whisper_options import (
    WhisperCommand,
    option_hint,
    whisper_options,
    whisper_values,
)
from vramscribe.console import error, say, stderr_console
from vramscribe.core.jobs import JobState
from vramscribe.core.settings import Settings
from vramscribe.errors import InvalidRequest, VramscribeError
from vramscribe.outputs import ALL_FORMATS, FORMATS
from vramscribe.settings import default
from vramscribe.submit.request import (
    COMPUTE_TYPES,
    DEFAULT_FORMATS,
    MAX_BEAM_SIZE,
    MIN_BEAM_SIZE,
    JobRequest,
    new_job_id,
    parse_channel_names,
    parse_request_priority,
)

# The option a request field is set by, where the two names differ.
_OPTION_OF = {"vad_filter": "--vad-filter", "outputs": "--output-format"}


@click.command(cls=WhisperCommand)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--model", "-m", default=job_default("model"), show_default=True, help="Model name or folder."
)
@click.option(
    "--compute-type",
    "--compute_type",
    default=job_default("compute_type"),
    show_default=True,
    type=click.Choice(COMPUTE_TYPES),
    help="Weights precision (default: float16 on a GPU, int8 on the CPU).",
)
@click.option(
    "--batch-size",
    "--batch_size",
    default="auto",
    show_default=True,
    callback=parse_batch_size,
    help="auto, or 1-64. Above 1, the batched pipeline: faster per file, ~1.5 GB more per "
    "instance at 8. auto picks per file from free memory (1 on the CPU until measured faster).",
)
@click.option("--language", default=None, help="Language code; detected when omitted.")
@click.option(
    "--beam-size",
    "--beam_size",
    default=job_default("beam_size"),
    show_default=True,
    type=click.IntRange(MIN_BEAM_SIZE, MAX_BEAM_SIZE),
    help="Beam search width.",
)
@click.option(
    "--vad-filter/--no-vad-filter",
    "--vad_filter/--no_vad_filter",
    "--vad/--no-vad",
    "vad",
    default=job_default("vad_filter"),
    help="Skip silence with the VAD filter. [True|False]",
)
@click.option(
    "--word-timestamps/--no-word-timestamps",
    "--word_timestamps/--no_word_timestamps",
    default=False,
    help="Include word timings in json output. [True|False]",
)
@click.option(
    "--initial-prompt",
    "--initial_prompt",
    default=None,
    help="Text that sets style and vocabulary.",
)
@click.option("--hotwords", default=None, help="Words to bias towards, e.g. product names.")
@click.option(
    "--priority",
    default=DEFAULT_PRIORITY_NAME,
    show_default=True,
    help="low, normal, high, urgent or 0-100.",
)
@click.option(
    "--output-dir",
    "-o",
    "--output_dir",
    "--out-dir",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Write outputs here.",
)
@click.option(
    "--output-format",
    "-f",
    "--output_format",
    "--format",
    "formats",
    multiple=True,
    type=click.Choice((*FORMATS, ALL_FORMATS)),
    help=f"Output formats (repeatable; all: every one; default: {' and '.join(DEFAULT_FORMATS)}).",
)
@whisper_options
@click.option(
    "--split-channels/--no-split-channels",
    "--split_channels/--no_split_channels",
    default=False,
    help="Transcribe each channel on its own and merge them by time, one speaker label per "
    "channel (without it, channels are mixed down to mono). [True|False]",
)
@click.option(
    "--channel-names",
    "--channel_names",
    default=None,
    help="Speaker labels, one per channel, e.g. agent,customer (default: channel 1, channel 2).",
)
@click.option("--overwrite", is_flag=True, help="Redo files whose outputs already exist.")
@ray_options
@run_options(keep_alive_s=default(Settings, "keep_alive_s"))
def transcribe(paths: tuple[str, ...], **opts: Any) -> None:
    """Transcribe audio files and folders (searched recursively).

    Outputs go next to each input (or under --output-dir, mirroring the input
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
    from vramscribe.audio import discover
    from vramscribe.paths import data_dir
    from vramscribe.submit.build import choose_model, engine_options
    from vramscribe.submit.run import open_batch_store, open_run

    found = discover(paths)
    for err in found.errors:
        error(err, console)
    if not found.files:
        error("nothing to transcribe", console)
        return 2
    template = batch_request(opts)
    model = choose_model(template.model, template.engine)  # a bad model fails before any work
    settings = run_settings(opts)
    store, sole = open_batch_store(data_dir())
    run = open_run(store, settings, data_dir(), recover=sole, records_bad_input=True)
    started = run.runner.clock()
    engine = engine_options(template, model, settings.cpu_threads)
    unfinished = {
        (rec.input_path, rec.model, tuple(sorted(rec.outputs))): rec
        for rec in (store.pending() if sole else [])
    }
    files = sort_inputs(
        found.files, template.formats, opts["out_dir"], store.ledger,
        overwrite=opts["overwrite"], engine=engine.to_dict(), now=started,
    )  # fmt: skip
    if (renamed := files.naming.message()) is not None:
        say(renamed, console)
    resumed = 0
    for file, root in files.todo:
        outputs = files.naming.outputs[file]
        request = replace(
            template, input=file, input_root=root, outputs=outputs, job_id=new_job_id()
        )
        # A file split by channel is submitted again: its stored parent alone would
        # resume as one mixed-down job.
        previous = None if request.split_channels else unfinished.pop(resume_key(request), None)
        if previous is not None:
            run.resume(previous, engine)
            resumed += 1
        else:
            run.submit(request, submitted_at=started)  # one submission: longest file first
    _say_sorted(files, resumed, console)
    if opts["ray_address"]:
        if not run_batch_on_ray(run, opts["ray_address"], opts["shared_path"], console):
            return 130
    elif not run_batch(run, console):
        return 130
    tasks = list(run.runner.tasks.values())
    print_summary(console, tasks, run.runner, started)
    ok = all(t.job.state is JobState.COMPLETED for t in tasks) and not found.errors
    ok = ok and not files.errors
    return 0 if ok else 1


def _say_sorted(files: Sorted, resumed: int, console: Console) -> None:
    if resumed:
        say(f"resuming {resumed} job(s) an interrupted run left unfinished", console)
    if files.skipped:
        say(
            f"skipping {files.skipped} file(s) whose outputs exist (use --overwrite to redo)",
            console,
        )
    if files.rewritten:
        say(
            f"wrote the outputs of {files.rewritten} file(s) from transcripts an earlier run "
            "kept when it could not write them",
            console,
        )
    for problem in files.errors:
        error(problem, console, label="failed")


def batch_request(opts: dict[str, Any]) -> JobRequest:
    """The request every file of the batch shares (its input and outputs set per file)."""
    formats = opts["formats"] or DEFAULT_FORMATS
    formats = FORMATS if ALL_FORMATS in formats else tuple(dict.fromkeys(formats))
    try:
        decoding, layout = whisper_values(opts)
        return JobRequest(
            input=Path(),
            model=opts["model"],
            priority=parse_request_priority(opts["priority"]),
            compute_type=opts["compute_type"],
            batch_size=opts["batch_size"],
            language=opts["language"],
            beam_size=opts["beam_size"],
            vad_filter=opts["vad"],
            word_timestamps=opts["word_timestamps"],
            initial_prompt=opts["initial_prompt"],
            hotwords=opts["hotwords"],
            outputs=tuple((f, Path()) for f in formats),
            engine=opts["engine"],
            fake=fake_config(opts),
            decoding=decoding,
            layout=layout,
            split_channels=opts["split_channels"],
            channel_names=parse_channel_names(opts["channel_names"])
            if opts["channel_names"]
            else (),
        )
    except InvalidRequest as exc:
        field = exc.field or ""
        hint = _OPTION_OF.get(field) or option_hint(field) or "--" + field.replace("_", "-")
        raise click.BadParameter(str(exc), param_hint=hint) from None


def resume_key(request: JobRequest) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What makes a stored unfinished job the same as a file of this batch."""
    outputs = tuple(sorted((fmt, str(path)) for fmt, path in request.outputs))
    return (str(request.input), request.model, outputs)
