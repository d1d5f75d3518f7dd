"""One model instance in its own process: load, transcribe one file, exit.

Started by the runtime as ``python -m vramscribe.worker`` with a JSON job spec
on stdin; speaks JSON lines on stdout (``loaded``, ``progress``, ``segment``,
``done``, ``error``). Process exit is what gives the device memory back
(in-process unloading leaves memory behind), so the worker never lives longer
than its one job.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from vramscribe.audio import decode_check
from vramscribe.core.retry import FailureKind
from vramscribe.engines.base import Engine, EngineOptions
from vramscribe.errors import BadInput, DeviceOutOfMemory
from vramscribe.outputs import write_atomic
from vramscribe.protocol import (
    Done,
    Failed,
    Loaded,
    Message,
    Progress,
    SegmentDone,
    WorkerSpec,
    encode,
)
from vramscribe.transcript import Segment


def emit(message: Message) -> None:
    sys.stdout.write(encode(message) + "\n")
    sys.stdout.flush()


def make_engine(options: EngineOptions, attempt: int) -> Engine:
    if options.engine == "fake":
        from vramscribe.engines.fake import FakeEngine

        return FakeEngine(options, attempt)
    from vramscribe.engines.whisper import WhisperEngine

    return WhisperEngine(options)


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, DeviceOutOfMemory) or "out of memory" in text


def failure_kind(exc: BaseException) -> FailureKind:
    """Out of memory, unreadable input, or a crash: what the runtime retries depends on it."""
    if is_oom(exc):
        return FailureKind.OOM
    return FailureKind.BAD_INPUT if "decod" in str(exc).lower() else FailureKind.CRASH


def run(spec: WorkerSpec) -> int:
    options = EngineOptions.from_dict(spec.engine)
    source = Path(spec.input)
    try:
        decode_check(source)
    except BadInput as exc:
        emit(Failed(FailureKind.BAD_INPUT, str(exc)))
        return 3
    engine = make_engine(options, spec.attempt)
    t0 = time.monotonic()
    try:
        memory = engine.load()
    except Exception as exc:
        emit(Failed(FailureKind.OOM if is_oom(exc) else FailureKind.LOAD_ERROR, str(exc)))
        return 4
    load_s = time.monotonic() - t0
    emit(Loaded(memory, load_s))

    def on_progress(done_s: float) -> None:
        emit(Progress(done_s))

    def on_segment(seg: Segment) -> None:
        emit(SegmentDone(seg.start, seg.end, seg.text))

    t1 = time.monotonic()
    try:
        transcript = engine.transcribe(source, on_progress, on_segment)
    except BadInput as exc:
        emit(Failed(FailureKind.BAD_INPUT, str(exc)))
        return 3
    except Exception as exc:
        emit(Failed(failure_kind(exc), f"{type(exc).__name__}: {exc}"))
        return 5
    transcribe_s = time.monotonic() - t1
    data = transcript.to_dict()
    data["timings"] = {**data.get("timings", {}), "load_s": load_s, "transcribe_s": transcribe_s}
    write_atomic(Path(spec.result), json.dumps(data))
    emit(Done(spec.result, load_s, transcribe_s))
    return 0


def main() -> int:
    return run(WorkerSpec.from_json(sys.stdin.read()))


if __name__ == "__main__":
    sys.exit(main())
