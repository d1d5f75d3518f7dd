from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Real recorded speech kept in the repository (see its README.md for origin and licence).
SPEECH_AUDIO = ROOT / "tests" / "data" / "audio"
EXAMPLES = ROOT / "examples" / "audio"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A real (silent) WAV file of the given length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test keeps learned footprints and run folders to itself."""
    monkeypatch.setenv("VRAMSCRIBE_DATA", str(tmp_path / "vramscribe-data"))
    monkeypatch.setenv("VRAMSCRIBE_HOST_DIR", str(tmp_path / "vramscribe-host"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
