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
from typing import Any

from vramscribe.audio import decode_check
from vramscribe.engines.base import Engine, EngineOptions
from vramscribe.errors import BadInput, DeviceOutOfMemory
from vramscribe.outputs import write_atomic
from vramscribe.transcript import Segment


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
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


def run(spec: dict[str, Any]) -> int:
    options = EngineOptions.from_dict(spec["engine"])
    source = Path(spec["input"])
    try:
        decode_check(source)
    except BadInput as exc:
        emit("error", kind="bad_input", message=str(exc))
        return 3
    engine = make_engine(options, int(spec.get("attempt", 1)))
    t0 = time.monotonic()
    try:
        memory = engine.load()
    except Exception as exc:
        emit("error", kind="oom" if is_oom(exc) else "load_error", message=str(exc))
        return 4
    load_s = time.monotonic() - t0
    emit("loaded", memory_mb=memory, load_s=load_s)

    def on_progress(done_s: float) -> None:
        emit("progress", done_s=done_s)

    def on_segment(seg: Segment) -> None:
        emit("segment", start=seg.start, end=seg.end, text=seg.text)

    t1 = time.monotonic()
    try:
        transcript = engine.transcribe(source, on_progress, on_segment)
    except BadInput as exc:
        emit("error", kind="bad_input", message=str(exc))
        return 3
    except Exception as exc:
        kind = "oom" if is_oom(exc) else "bad_input" if "decod" in str(exc).lower() else "crash"
        emit("error", kind=kind, message=f"{type(exc).__name__}: {exc}")
        return 5
    timings = {"load_s": load_s, "transcribe_s": time.monotonic() - t1}
    data = transcript.to_dict()
    data["timings"] = {**data.get("timings", {}), **timings}
    write_atomic(Path(spec["result"]), json.dumps(data))
    emit("done", result=spec["result"], **timings)
    return 0


def main() -> int:
    spec = json.loads(sys.stdin.read())
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
