"""A worker decodes its input once and hands the samples to the engine.

The real worker process runs the real tiny.en model under ``strace``; the
system calls show every time a process opens the input: once, by the worker's
own decode, never again by faster-whisper.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SPEECH_AUDIO
from vramscribe.engines.base import EngineOptions
from vramscribe.models import resolve_model
from vramscribe.protocol import WorkerSpec
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow


def test_the_worker_opens_its_input_once_and_the_engine_never(tmp_path: Path) -> None:
    audio = shutil.copy(SPEECH_AUDIO / "jfk.flac", tmp_path / "speech.flac")
    engine = EngineOptions(model="tiny.en", model_path=resolve_model("tiny.en").path)
    spec = WorkerSpec(str(audio), str(tmp_path / "result.json"), 1, engine.to_dict())
    trace = tmp_path / "trace.txt"
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=open,openat,openat2", "-o", str(trace),
         sys.executable, "-m", "vramscribe.worker"],
        input=spec.to_json() + "\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"type": "done"' in done.stdout or '"done"' in done.stdout
    opens = [
        line for line in trace.read_text().splitlines()
        if str(audio) in line and not re.search(r"= -1 E", line)
    ]  # fmt: skip
    assert len(opens) == 1, opens
    text = " ".join(
        s["text"] for s in json.loads((tmp_path / "result.json").read_text())["segments"]
    )
    refs = json.loads((SPEECH_AUDIO / "references.json").read_text())["jfk.flac"]
    assert word_error_rate(refs if isinstance(refs, str) else refs["text"], text) <= 0.05
