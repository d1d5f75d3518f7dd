"""The ``vramscribe`` command: transcribe, serve, the service's clients, and tools."""

from __future__ import annotations

import click

from vramscribe.cli import remote, serve, tools, transcribe


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vramscribe")
def main() -> None:
    """Transcribe many audio files at once with Whisper, without running out of GPU memory."""


for command in (
    transcribe.transcribe,
    tools.devices,
    tools.simulate,
    tools.report,
    serve.serve,
    remote.submit,
    remote.jobs,
    remote.job,
    remote.wait,
    remote.cancel,
):
    main.add_command(command)

__all__ = ["main"]
