"""What a worker killed halfway through a file costs, resumed against started over.

    python bench/resume_cost.py [--kill-after N] [--json PATH]

The real ``base`` model on the CPU transcribes ``tests/data/audio/multilingual.mp3``
(60 s) three ways in one run: uninterrupted; killed (SIGKILL) after its N-th
reported segment and retried from the end of the last finished segment (what
the runner does); and, as the baseline of a retry that starts over, the killed
attempt followed by a whole uninterrupted run. Times are wall seconds of the
transcription itself (the workers' own ``transcribe_s``, and for the killed
attempt the time from its first to its last reported segment), so the ratios
hold on any machine; the word error rate compares the joined transcript with
the uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from vramscribe.core.jobs import Job, JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.cpu import CpuDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.models import resolve_model
from vramscribe.runtime.events import JobChanged, RunnerEvent, SegmentTranscribed
from vramscribe.runtime.runner import Runner, Task
from vramscribe.transcript import Transcript
from vramscribe.wer import word_error_rate

AUDIO = Path(__file__).resolve().parents[1] / "tests" / "data" / "audio" / "multilingual.mp3"


def one_run(folder: Path, kill_after: int | None) -> tuple[Task, float, Transcript]:
    """One job through the real runner; returns it, the killed attempt's seconds, and
    its transcript."""
    resolved = resolve_model("base", cache_dir=folder / "models")
    engine = EngineOptions(model="base", model_path=resolved.path, compute_type="int8",
                           language="de")  # fmt: skip
    out = folder / "out.json"
    task = Task(Job("1", "base", audio_s=59.9, compute_type="int8", batch_size=1),
                AUDIO, engine, [("json", out)])  # fmt: skip
    runner = Runner([CpuDevice(threads_per_instance=2)], Settings(backoff_base_s=0.1),
                    run_dir=folder / "run")  # fmt: skip
    seen: list[int] = []
    began: list[float] = []

    def on_event(event: RunnerEvent) -> None:
        if isinstance(event, JobChanged) and task.job.state is JobState.PROCESSING:
            began.append(time.monotonic())
        if isinstance(event, SegmentTranscribed) and task.job.attempts == 1:
            seen.append(1)
            if kill_after is not None and len(seen) == kill_after and task.worker_pid:
                os.kill(task.worker_pid, signal.SIGKILL)
                began.append(time.monotonic())

    runner.listeners.insert(0, on_event)
    runner.add(task)
    runner.run()
    if task.job.state is not JobState.COMPLETED:
        sys.exit(f"the job did not complete: {task.job.error}")
    killed_s = began[1] - began[0] if kill_after is not None and len(began) > 1 else 0.0
    return task, killed_s, Transcript.from_dict(json.loads(out.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-after", type=int, default=1, help="segments before the kill")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        plain, _, whole = one_run(Path(tmp) / "plain", None)
        resumed, killed_s, joined = one_run(Path(tmp) / "killed", args.kill_after)
    full_s = plain.transcribe_s or 0.0
    retry_s = resumed.transcribe_s or 0.0
    joint = resumed.resumed_from_s[0] if resumed.resumed_from_s else 0.0
    rows = {
        "uninterrupted_s": full_s,
        "killed_attempt_s": killed_s,
        "resumed_retry_s": retry_s,
        "resumed_total_s": killed_s + retry_s,
        "restarted_total_s": killed_s + full_s,
        "resumed_over_restarted": (killed_s + retry_s) / (killed_s + full_s),
        "joint_s": joint,
        "wer_joined_vs_uninterrupted": word_error_rate(whole.text, joined.text),
    }
    print(f"resumed at {joint:.1f} s of 59.9 s")
    print(f"{'':28} {'seconds':>8}")
    for name in ("uninterrupted_s", "killed_attempt_s", "resumed_retry_s", "resumed_total_s",
                 "restarted_total_s"):  # fmt: skip
        print(f"{name:28} {rows[name]:8.2f}")
    print(f"{'resumed / restarted':28} {rows['resumed_over_restarted']:8.2f}")
    print(f"{'WER joined vs uninterrupted':28} {rows['wer_joined_vs_uninterrupted']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
