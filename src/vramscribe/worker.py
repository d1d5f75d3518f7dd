"""One model instance in its own process: load once, transcribe files one at a time.

Started by the runtime as ``python -m vramscribe.worker``; reads one JSON job
spec per line on stdin and speaks JSON lines on stdout (``started``,
``loaded``, ``progress``, ``segment``, ``done``, ``error``; see
:mod:`vramscribe.protocol`). It keeps its model loaded between jobs (a warm
instance) and exits when its input ends or a job fails for any reason but bad
input. Process exit is what gives the device memory back (in-process
unloading leaves memory behind), which is why the runtime releases an
instance by ending its process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vramscribe.audio import decode_samples
from vramscribe.channels import decode_channel
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
    Started,
    WorkerSpec,
    encode,
)
from vramscribe.runtime.spares import SPARE_ENV
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


class Instance:
    """One loaded model serving jobs one after another; ``code`` is set once it must exit."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.code: int | None = None

    def serve(self, spec: WorkerSpec) -> None:
        """One job: decode, load on the first, transcribe, write the result.

        After bad input the instance stays (its model is fine); after any other
        failure it exits, so a broken instance never takes another job.
        """
        options = EngineOptions.from_dict(spec.engine)
        source = Path(spec.input)
        try:
            samples = (
                decode_samples(source)
                if options.channel is None
                else decode_channel(source, options.channel)
            )
        except BadInput as exc:
            emit(Failed(FailureKind.BAD_INPUT, str(exc)))
            if self.engine is None:
                self.code = 3
            return
        if self.engine is None and not self._load(options, spec.attempt):
            return
        assert self.engine is not None
        t1 = time.monotonic()
        try:
            transcript = self.engine.transcribe(
                samples, options, spec.attempt, _progress, _segment, spec.resume_from_s
            )
        except BadInput as exc:
            emit(Failed(FailureKind.BAD_INPUT, str(exc)))
            return
        except Exception as exc:
            kind = failure_kind(exc)
            emit(Failed(kind, f"{type(exc).__name__}: {exc}"))
            if kind is not FailureKind.BAD_INPUT:
                self.code = 5
            return
        transcribe_s = time.monotonic() - t1
        data = transcript.to_dict()
        data["timings"] = {**data.get("timings", {}), "transcribe_s": transcribe_s}
        write_atomic(Path(spec.result), json.dumps(data))
        emit(Done(spec.result, 0.0, transcribe_s))

    def _load(self, options: EngineOptions, attempt: int) -> bool:
        engine = make_engine(options, attempt)
        t0 = time.monotonic()
        try:
            memory = engine.load()
        except Exception as exc:
            emit(Failed(FailureKind.OOM if is_oom(exc) else FailureKind.LOAD_ERROR, str(exc)))
            self.code = 4
            return False
        self.engine = engine
        emit(Loaded(memory, time.monotonic() - t0))
        return True


def _progress(done_s: float) -> None:
    emit(Progress(done_s))


def _segment(seg: Segment, language: str) -> None:
    words = None if seg.words is None else [w.to_dict() for w in seg.words]
    emit(SegmentDone(seg.start, seg.end, seg.text, words, language))


def main() -> int:
    """Serve the jobs on stdin until it ends (or a failure ends the instance)."""
    started = time.monotonic()
    if os.environ.get(SPARE_ENV):  # started ahead of need: import while the parent does
        preload(EngineOptions())
    first = sys.stdin.readline()
    if not first.strip():
        return 0
    spec = WorkerSpec.from_json(first)
    preload(EngineOptions.from_dict(spec.engine))
    emit(Started(time.monotonic() - started))
    instance = Instance()
    while True:
        instance.serve(spec)
        if instance.code is not None:
            return instance.code
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        spec = WorkerSpec.from_json(line)


def preload(options: EngineOptions) -> None:
    """Import the engine's libraries now, so that start-up and model load are told apart."""
    if options.engine != "fake":
        import faster_whisper  # noqa: F401


if __name__ == "__main__":
    sys.exit(main())
