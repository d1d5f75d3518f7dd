"""The ``vramscribe`` command: transcribe, serve, the service's clients, and tools."""

from __future__ import annotations

import sys

from vramscribe.runtime.spares import prestart_for

# Before the imports below (half a second): spare workers import their engine meanwhile.
prestart_for(sys.argv)

import click  # noqa: E402

from vramscribe.cli import remote, serve, tools, transcribe  # noqa: E402


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
