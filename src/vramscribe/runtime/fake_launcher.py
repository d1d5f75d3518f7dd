"""A fake launcher for tests: workers that say what the test tells them to.

Nothing is started. Each launched :class:`FakeWorker` records its specs and
waits for the test to script it (``say`` a protocol message, ``finish``
with a transcript, ``exit`` with a code), so a test drives the runner on a
fake clock through exactly the protocol a real worker speaks. Memory is the
test's business: allocate on a fake device before sending ``Loaded``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vramscribe.outputs import write_atomic
from vramscribe.protocol import Done, Loaded, Message, WorkerSpec
from vramscribe.runtime.launcher import Deliver
from vramscribe.transcript import Segment, Transcript


@dataclass(slots=True, eq=False)
class FakeWorker:
    pid: int
    spec: WorkerSpec
    log_path: Path
    deliver: Deliver
    returncode: int | None = None
    kills: int = 0
    closed: bool = False
    stdin_closed: bool = False
    specs: list[WorkerSpec] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.kills += 1
        if self.returncode is None:
            self.exit(-9)

    def wait(self, timeout: float) -> int | None:
        return self.returncode

    def send(self, spec: WorkerSpec) -> bool:
        if self.stdin_closed or self.returncode is not None:
            return False
        self.specs.append(spec)
        self.spec = spec
        return True

    def close(self) -> None:
        self.stdin_closed = True

    # -- what a test scripts ---------------------------------------------------------
    def say(self, message: Message) -> None:
        """The worker writes ``message`` on its output."""
        self.deliver(self.pid, message)

    def exit(self, code: int = 0, stderr: str = "") -> None:
        """The process ends; its output closes."""
        if stderr:
            self.log_path.write_text(stderr)
        self.returncode = code
        if not self.closed:
            self.closed = True
            self.deliver(self.pid, None)

    def load(self, memory_mb: float, load_s: float = 0.5) -> None:
        self.say(Loaded(memory_mb, load_s))

    def finish(
        self,
        text: str = "fake transcript",
        audio_s: float = 1.0,
        transcribe_s: float = 1.0,
        stay: bool = False,
    ) -> None:
        """Write a transcript where a real worker would and report it; then exit 0,
        or with ``stay`` wait for the next job (what a real worker does until its
        input is closed)."""
        transcript = Transcript(
            segments=(Segment(0.0, audio_s, text),),
            language="en",
            duration_s=audio_s,
            model=str(self.spec.engine.get("model", "fake")),
        )
        write_atomic(Path(self.spec.result), json.dumps(transcript.to_dict()))
        self.say(Done(self.spec.result, 0.0, transcribe_s))
        if not stay or self.stdin_closed:
            self.exit(0)


@dataclass(slots=True)
class FakeLauncher:
    """Hands out fake workers with increasing pids; ``workers`` is every one launched."""

    next_pid: int = 50_000
    workers: list[FakeWorker] = field(default_factory=list)

    def launch(self, spec: WorkerSpec, log_path: Path, deliver: Deliver) -> FakeWorker:
        self.next_pid += 1
        worker = FakeWorker(self.next_pid, spec, log_path, deliver, specs=[spec])
        self.workers.append(worker)
        return worker
