"""``make demo``: transcribe the bundled clips with the bundled tiny.en model, then score them.

Runs the real command (``vramscribe transcribe``) on ``examples/audio`` with
outputs in a temporary folder, then prints each clip's word error rate against
its reference text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from vramscribe.wer import word_error_rate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "audio"


def main() -> int:
    references = json.loads((EXAMPLES / "references.json").read_text())
    with tempfile.TemporaryDirectory(prefix="vramscribe-demo-") as out:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        cmd = [
            sys.executable, "-m", "vramscribe", "transcribe", str(EXAMPLES),
            "--model", "tiny.en", "--device", "cpu", "--out-dir", out,
            "--format", "txt", "--format", "srt", "--format", "json",
        ]  # fmt: skip
        print("$ vramscribe " + " ".join(cmd[3:]), flush=True)
        code = subprocess.call(cmd, env=env)
        print("\nword error rate against the references:")
        for name, reference in sorted(references.items()):
            txt = Path(out) / Path(name).with_suffix(".txt")
            hypothesis = txt.read_text().strip() if txt.exists() else ""
            wer = word_error_rate(reference, hypothesis)
            print(f"  {name:14} WER {wer:5.2f}  {hypothesis!r}")
    return code


if __name__ == "__main__":
    sys.exit(main())
