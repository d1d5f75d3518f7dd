"""What the command prints is what was meant: brackets in names and hints survive.

rich reads ``[...]`` as markup; these run the real command in a subprocess and
look for the text exactly as written.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from tests import cli
from tests.conftest import write_wav
from vramscribe.console import cell, error, literal, say, warn
from vramscribe.devices.shared_fake import SharedFakeDevice


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli.run_cli(*args, timeout=120, COLUMNS="200", **env)


@pytest.mark.parametrize("name", ["talk[1].mp3", "talk[draft].mp3", "talk[/red].mp3"])
def test_a_missing_input_is_named_as_typed(tmp_path: Path, name: str) -> None:
    missing = tmp_path / name
    out = run_cli("transcribe", str(missing))
    assert out.returncode == 2
    assert f"error: no such file or folder: {missing}\n" in out.stderr
    assert "error: nothing to transcribe" in out.stderr


def test_the_offline_hint_names_the_models_extra_verbatim(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "in" / "clip.wav", 1.0)
    out = run_cli(
        "transcribe", str(audio), "--model", "small", "--device", "cpu", HF_HUB_OFFLINE="1"
    )
    assert out.returncode == 2
    assert "model 'small' is not available offline" in out.stderr
    assert "pip install 'vramscribe[models]'" in out.stderr


def test_device_names_in_the_devices_table_keep_their_brackets(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", "fake[draft]:0", total_mb=8000)
    out = run_cli("devices", "--device", f"fake:{gpu.path}")
    assert out.returncode == 0, out.stderr
    assert "fake[draft]:0" in out.stdout


def test_the_helpers_print_text_as_written() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=20, color_system=None)
    text = "pip install 'vramscribe[models]' [bold]x[/bold] :smile: " + "y" * 40
    say(text, console)
    error(text, console)
    warn(text, console)
    error(text, console, label="failed")
    console.print(cell(text), soft_wrap=True)
    console.print(literal(text), soft_wrap=True, emoji=False)
    assert buffer.getvalue().splitlines() == [
        text,
        f"error: {text}",
        f"warning: {text}",
        f"failed: {text}",
        text,
        text,
    ]
