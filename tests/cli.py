"""The command line as the tests run it: a real ``python -m vramscribe`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import SPEECH_AUDIO


def run_cli(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """``vramscribe ARGS`` with captured text output; ``env`` is added to this process's."""
    return subprocess.run(
        [sys.executable, "-m", "vramscribe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )


def transcribe_on_cpu(*args: str) -> subprocess.CompletedProcess[str]:
    """``vramscribe transcribe ARGS --device cpu``: the real model on this machine."""
    return run_cli("transcribe", *args, "--device", "cpu")


def reference_text(name: str) -> str:
    """The reference transcript of a bundled speech clip (tests/data/audio/references.json)."""
    ref = json.loads((SPEECH_AUDIO / "references.json").read_text())[name]
    return ref if isinstance(ref, str) else str(ref["text"])
