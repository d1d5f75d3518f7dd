"""bench/gpu_check.py's warm phase, run against a shared fake device (no GPU here).

On a real GPU the same code runs with torch or cupy workers; this checks its
logic end to end: warm instances serve most jobs, idle ones are released after
the keep-alive, and idle ones are evicted for a job too big beside them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_warm_phase_on_a_fake_gpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--fake-gpu",
         str(tmp_path / "fake.json"), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    warm = json.loads(out.read_text())["warm"]
    assert warm["completed"] == warm["jobs"] == 12
    assert warm["loads"] <= 4 and warm["warm_starts"] == 12 - warm["loads"]
    assert warm["released_after_keep_alive_ms"]["n"] >= 1
    assert warm["evicted_for_big_job"] >= 1 and warm["big_job"] == "completed"
    assert warm["out_of_memory"] == 0 and warm["unfinished"] == 0
    assert "(e) warm: model loads / warm starts" in done.stdout
